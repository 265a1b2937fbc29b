// A foreign SIP client for callbox tests, as a browser on Janus's SIP plugin is one (the shape of Janus's own
// siptest demo, on janus.js 1.1.x's tracks API): registers a SIP account at the stack's Kamailio through Janus,
// calls a SIP URI or answers a call, with the fake camera and microphone, and reports what its one
// PeerConnection sends and receives. Chromium's own codec offer is used as it is (nothing is filtered).
//
// URL query (all optional but the account):
//   server    Janus WebSocket URL                 (default ws://127.0.0.1:18188)
//   token     Janus signed token (token_auth)     (default none)
//   display   a name for this page's logs         (default sip-XXXX)
//   sipuser   the SIP URI to register             (sip:user@domain)
//   authuser  the digest user, when not the URI's user (callbox's ephemeral users: "<expiry>%3A<user>")
//   ha1       hex MD5("<auth user>:<realm>:<password>"), sent as ha1_secret
//   secret    a plain password instead of ha1
//   proxy, outboundproxy   the registrar and the outbound proxy (sip:127.0.0.1:PORT; Janus needs the outbound
//             proxy, without it it resolves the SIP domain)
//   regttl    registration expiry in seconds
//   audio, video   0 to call/answer without capturing that medium (default 1)
//   width, height, fps   capture constraints (default 320x240@15)
//   audioproc 1: keep the browser's echo cancellation / noise suppression / AGC (default off: they eat a test tone)
//   autoanswer 1: answer incoming calls at once (default 0: wait for the "answer" command)
//   debug     1: janus.js logs everything to the console
//   leaveafter N: leave (destroy the Janus session) N s after loading
//   logstats  N: every N ms print "CALLBOX_STATS <json>" with console.log
//   control   FILE: a JSON file beside the page, read every 250 ms; {"seq": N, "command": ...} runs once per new
//             seq. Commands: "call" (with "uri"), "answer", "hangup", "leave". Over file:// this needs Chromium's
//             --allow-file-access-from-files (tests/src/chromium.rs passes it).
//
// Every failure (a plugin error, a failed registration, an SDP the browser refuses, ICE failing, an uncaught
// exception or rejection in the page) puts the page in phase "error" with the reason in "error".
// Exposed to the test: window.callboxState and async window.callboxStats().
'use strict';

(function () {
	const q = new URLSearchParams(window.location.search);
	const int = (v, d) => (v === null || v === '' || isNaN(parseInt(v, 10))) ? d : parseInt(v, 10);
	const cfg = {
		server: q.get('server') || 'ws://127.0.0.1:18188',
		token: q.get('token') || null,
		display: q.get('display') || ('sip-' + Math.random().toString(36).slice(2, 6)),
		sipuser: q.get('sipuser'),
		authuser: q.get('authuser'),
		ha1: q.get('ha1'),
		secret: q.get('secret'),
		proxy: q.get('proxy'),
		outboundproxy: q.get('outboundproxy'),
		regttl: int(q.get('regttl'), 0),
		audio: q.get('audio') !== '0',
		video: q.get('video') !== '0',
		width: int(q.get('width'), 320),
		height: int(q.get('height'), 240),
		fps: int(q.get('fps'), 15),
		audioproc: q.get('audioproc') === '1',
		autoanswer: q.get('autoanswer') === '1',
		debug: q.get('debug') === '1',
		logstats: int(q.get('logstats'), 0),
		leaveafter: int(q.get('leaveafter'), 0),
		control: q.get('control') || null,
	};

	const state = {
		phase: 'init',          // init -> connected -> registering -> registered ; or error, left
		error: null,
		display: cfg.display,
		registered: false,
		username: null,         // the registered URI, as the plugin reports it
		calls: 0,               // calls started (made or received)
		missedCalls: 0,         // calls the plugin turned away with 486 while this handle was busy
		call: null,             // the current or last call (see newCall)
		events: [],
	};
	window.callboxState = state;

	function note(s) {
		const line = new Date().toISOString().slice(11, 23) + ' ' + s;
		state.events.push(line);
		if (state.events.length > 200) state.events.shift();
		console.log('CALLBOX ' + line);
		const el = document.getElementById('status');
		if (el) el.textContent = state.phase + (state.error ? ' ERROR ' + state.error : '') + '\n' + state.events.slice(-15).join('\n');
	}
	function describe(err) {
		if (err === undefined || err === null) return String(err);
		if (typeof err === 'string') return err;
		if (err.name || err.message) return (err.name ? err.name + ': ' : '') + (err.message || '');
		try { return JSON.stringify(err); } catch (e) { return String(err); }
	}
	function fail(what, err) {
		if (state.phase === 'error') { note('FAIL (again) ' + what + ': ' + describe(err)); return; }
		state.phase = 'error';
		state.error = what + ': ' + describe(err);
		note('FAIL ' + state.error);
	}
	// Anything the page or janus.js throws and nobody catches is a failure of the test's client.
	window.addEventListener('error', (e) => fail('uncaught error', (e.message || '') + ' at ' + e.filename + ':' + e.lineno));
	window.addEventListener('unhandledrejection', (e) => fail('unhandled rejection', e.reason));

	let janus = null, sip = null;
	const opaqueId = 'callbox-sip-' + Janus.randomString(8);

	function newCall(direction, peer) {
		state.calls += 1;
		state.call = {
			seq: state.calls, direction: direction, peer: peer, state: direction === 'outgoing' ? 'calling' : 'incoming',
			callId: null, pcUp: false, ice: null, hangupCode: null, hangupReason: null, localVideo: null, remoteVideo: null,
			jsep: null,   // the incoming call's offer, until answered
		};
		return state.call;
	}

	// "PT NAME[ profile-level-id][ pm]" for each video format of an SDP's first video section, retransmission
	// and FEC formats left out: what the test reports (and a reader of a failure wants) about codec choice.
	function videoFormats(sdp) {
		if (!sdp) return null;
		const lines = sdp.split(/\r?\n/);
		let inVideo = false, fmts = null;
		const rtpmap = {}, fmtp = {};
		for (const l of lines) {
			if (l.startsWith('m=')) {
				if (fmts) break;
				inVideo = l.startsWith('m=video');
				if (inVideo) fmts = l.split(' ').slice(3);
				continue;
			}
			if (!inVideo) continue;
			let m = /^a=rtpmap:(\d+) ([^/]+)/.exec(l);
			if (m) rtpmap[m[1]] = m[2];
			m = /^a=fmtp:(\d+) (.*)$/.exec(l);
			if (m) fmtp[m[1]] = m[2];
		}
		if (!fmts) return '';
		const out = [];
		for (const pt of fmts) {
			const name = rtpmap[pt] || '?';
			if (/^(rtx|red|ulpfec|flexfec-03)$/i.test(name)) continue;
			let s = pt + ' ' + name;
			const f = fmtp[pt] || '';
			const plid = /profile-level-id=([0-9a-fA-F]+)/.exec(f);
			if (plid) s += ' ' + plid[1];
			const pm = /packetization-mode=(\d)/.exec(f);
			if (pm) s += ' pm' + pm[1];
			out.push(s);
		}
		return out.join(', ');
	}

	function tracks() {
		const t = [];
		// No echo cancellation / noise suppression / AGC by default: noise suppression removes a steady test tone
		t.push(cfg.audio
			? { type: 'audio', recv: true, capture: cfg.audioproc ? true : { echoCancellation: false, noiseSuppression: false, autoGainControl: false } }
			: { type: 'audio', recv: true, capture: false });
		t.push(cfg.video
			? { type: 'video', recv: true, capture: { width: { ideal: cfg.width }, height: { ideal: cfg.height }, frameRate: { ideal: cfg.fps } } }
			: { type: 'video', recv: true, capture: false });
		return t;
	}

	// ---- session, handle, registration ----
	function start() {
		janus = new Janus({
			server: cfg.server,
			iceServers: [],          // janus.js defaults to a public STUN server: never here
			token: cfg.token,
			success: () => { state.phase = 'connected'; note('session ' + janus.getSessionId()); attach(); },
			error: (e) => fail('session', e),
			destroyed: () => note('session destroyed'),
		});
	}

	function attach() {
		janus.attach({
			plugin: 'janus.plugin.sip',
			opaqueId: opaqueId,
			success: (h) => { sip = h; note('sip handle ' + h.getId()); register(); },
			error: (e) => fail('attach', e),
			iceState: (s) => {
				if (state.call) state.call.ice = s;
				note('ICE ' + s);
				if (s === 'failed') fail('ICE', 'failed' + (state.call ? ' in call ' + state.call.seq : ''));
			},
			webrtcState: (on, reason) => {
				if (state.call) state.call.pcUp = on;
				note('PeerConnection ' + (on ? 'up' : 'down' + (reason ? ' (' + reason + ')' : '')));
			},
			mediaState: (medium, on, mid) => note('Janus ' + (on ? 'receives' : 'stopped receiving') + ' our ' + medium + ' mid=' + mid),
			slowLink: (uplink, lost, mid) => note('slowlink uplink=' + uplink + ' lost=' + lost + ' mid=' + mid),
			onmessage: onMessage,
			onlocaltrack: (track, on) => {
				if (!on || track.kind !== 'video') return;
				const local = document.getElementById('local');
				local.textContent = '';
				const v = document.createElement('video');
				v.muted = true; v.autoplay = true; v.playsInline = true;
				v.srcObject = new MediaStream([track]);
				local.appendChild(v);
			},
			onremotetrack: onRemoteTrack,
			oncleanup: () => {
				if (state.call) state.call.pcUp = false;
				document.getElementById('remote').textContent = '';
				document.getElementById('local').textContent = '';
				note('cleanup');
			},
		});
	}

	function register() {
		if (!cfg.sipuser) return fail('register', 'no sipuser in the URL');
		const req = { request: 'register', username: cfg.sipuser };
		if (cfg.authuser) req.authuser = cfg.authuser;
		if (cfg.ha1) req.ha1_secret = cfg.ha1;
		else if (cfg.secret) req.secret = cfg.secret;
		if (cfg.proxy) req.proxy = cfg.proxy;
		if (cfg.outboundproxy) req.outbound_proxy = cfg.outboundproxy;
		if (cfg.regttl > 0) req.register_ttl = cfg.regttl;
		req.display_name = cfg.display;
		state.phase = 'registering';
		note('registering ' + cfg.sipuser + ' via ' + (cfg.outboundproxy || cfg.proxy));
		sip.send({ message: req, error: (e) => fail('register', e) });
	}

	function onMessage(msg, jsep) {
		if (msg.error_code || msg.error) return fail('sip plugin', msg.error_code + ' ' + msg.error);
		const result = msg.result || {};
		const ev = result.event;
		if (!ev) return;
		const call = state.call;
		switch (ev) {
		case 'registering':
			break;
		case 'registered':
			state.registered = true; state.username = result.username; state.phase = 'registered';
			note('registered as ' + result.username);
			break;
		case 'registration_failed':
			state.registered = false;
			fail('registration', result.code + ' ' + result.reason);
			break;
		case 'calling':
			if (call) call.callId = msg.call_id || null;
			note('calling ' + (call ? call.peer : '?') + ' (call id ' + msg.call_id + ')');
			break;
		case 'ringing':
		case 'proceeding':
			if (call && call.state === 'calling') call.state = ev === 'ringing' ? 'ringing' : call.state;
			note(ev + (result.code ? ' ' + result.code : ''));
			break;
		case 'progress':
			note('early media from ' + result.username);
			if (jsep) applyAnswer(jsep, 'the early-media answer');
			break;
		case 'accepted':
			if (call) call.state = 'accepted';
			note('accepted by ' + (result.username || (call && call.peer)));
			if (jsep) applyAnswer(jsep, 'the answer');
			break;
		case 'accepting':
			break;
		case 'incomingcall': {
			if (call && call.state !== 'hungup') { note('WARNING: incoming call from ' + result.username + ' while in call ' + call.seq); }
			const c = newCall('incoming', result.username);
			c.callId = msg.call_id || null;
			c.jsep = jsep;
			c.remoteVideo = jsep ? videoFormats(jsep.sdp) : null;
			note('incoming call ' + c.seq + ' from ' + result.username + (jsep ? '' : ' WITHOUT an offer'));
			if (jsep) note('offer video: ' + c.remoteVideo);
			if (cfg.autoanswer) answer();
			break;
		}
		case 'updatingcall':
			// A re-INVITE (only seen with autoaccept_reinvites false): accept it as it is
			note('re-INVITE');
			sip.createAnswer({
				jsep: jsep, tracks: [],
				success: (ans) => sip.send({ message: { request: 'update' }, jsep: ans, error: (e) => fail('update', e) }),
				error: (e) => fail('answering a re-INVITE', e),
			});
			break;
		case 'hangup':
			// The plugin also reports the end of a dialog it turned away itself (a missed call's 486): only a hangup
			// of our call's Call-ID, or without one, ends our call.
			if (!call || call.state === 'hungup' || (msg.call_id && call.callId && msg.call_id !== call.callId)) {
				note('hangup ' + result.code + ' ' + result.reason + ' of call id ' + msg.call_id + ', not our call: ignored');
				break;
			}
			call.state = 'hungup'; call.hangupCode = result.code; call.hangupReason = result.reason;
			note('hangup ' + result.code + ' ' + result.reason + ' (call ' + call.seq + ')');
			sip.hangup();   // close the PeerConnection and stop the capture; the SIP dialog is over already
			break;
		case 'hangingup':
		case 'declining':
			break;
		case 'missed_call':
			state.missedCalls += 1;
			note('missed call from ' + result.caller + ' (call id ' + msg.call_id + '): the plugin answered 486 (busy)');
			break;
		default:
			note('sip event ' + ev);
		}
	}

	function applyAnswer(jsep, what) {
		const call = state.call;
		if (call) call.remoteVideo = videoFormats(jsep.sdp);
		note(what + ' video: ' + (call ? call.remoteVideo : videoFormats(jsep.sdp)));
		sip.handleRemoteJsep({
			jsep: jsep,
			success: () => note(what + ' applied'),
			error: (e) => fail('applying ' + what, e),
		});
	}

	// ---- commands ----
	function doCall(uri) {
		if (!state.registered) return fail('call', 'not registered');
		if (state.call && state.call.state !== 'hungup') return fail('call', 'already in call ' + state.call.seq);
		const c = newCall('outgoing', uri);
		note('call ' + c.seq + ' to ' + uri);
		sip.createOffer({
			tracks: tracks(),
			success: (offer) => {
				c.localVideo = videoFormats(offer.sdp);
				note('offer video: ' + c.localVideo);
				sip.send({ message: { request: 'call', uri: uri }, jsep: offer, error: (e) => fail('call', e) });
			},
			error: (e) => fail('createOffer', e),
		});
	}

	function answer() {
		const c = state.call;
		if (!c || c.state !== 'incoming') return fail('answer', 'no incoming call');
		if (!c.jsep) return fail('answer', 'the incoming call has no offer');
		c.state = 'answering';
		sip.createAnswer({
			jsep: c.jsep,
			tracks: tracks(),
			success: (ans) => {
				c.localVideo = videoFormats(ans.sdp);
				note('answer video: ' + c.localVideo);
				sip.send({
					message: { request: 'accept' }, jsep: ans,
					success: () => note('accept sent'),
					error: (e) => fail('accept', e),
				});
			},
			error: (e) => fail('createAnswer', e),
		});
		c.jsep = null;
	}

	function hangup() {
		const c = state.call;
		if (!c || c.state === 'hungup') return note('hangup: no call');
		note('hanging up call ' + c.seq);
		c.state = c.state === 'incoming' ? 'declining' : 'hangingup';
		sip.send({ message: { request: c.state === 'declining' ? 'decline' : 'hangup' }, error: (e) => fail('hangup', e) });
	}

	function onRemoteTrack(track, mid, on) {
		const id = 'remote-' + mid;
		const old = document.getElementById(id);
		if (!on) { if (old) old.remove(); note('remote track mid=' + mid + ' removed'); return; }
		if (old) return;
		note('remote ' + track.kind + ' track mid=' + mid);
		// Every remote track on a playing element: Chromium pulls (and so measures) audio only for a sink.
		const el = document.createElement(track.kind === 'video' ? 'video' : 'audio');
		el.id = id; el.autoplay = true; el.playsInline = true;
		if (track.kind === 'video') el.muted = true;
		el.srcObject = new MediaStream([track]);
		document.getElementById('remote').appendChild(el);
		el.play().catch((e) => note('play() mid=' + mid + ': ' + e.message));
	}

	// ---- stats for the test ----
	function codecOf(rep, r) {
		const c = r.codecId ? rep.get(r.codecId) : null;
		if (!c) return {};
		return { codecMime: c.mimeType, payloadType: c.payloadType, sdpFmtpLine: c.sdpFmtpLine || null };
	}

	async function callboxStats() {
		const c = state.call;
		const out = {
			t: Date.now(), phase: state.phase, error: state.error, display: state.display, outbound: [], inbound: [],
			sip: {
				registered: state.registered, username: state.username, calls: state.calls, missedCalls: state.missedCalls,
				path: null,
				call: c ? {
					seq: c.seq, direction: c.direction, peer: c.peer, state: c.state, pcUp: c.pcUp, ice: c.ice,
					hangupCode: c.hangupCode, hangupReason: c.hangupReason, localVideo: c.localVideo, remoteVideo: c.remoteVideo,
				} : null,
			},
		};
		const pc = sip && sip.webrtcStuff && sip.webrtcStuff.pc;
		if (pc) {
			for (const tr of pc.getTransceivers()) {
				if (tr.sender && tr.sender.track) {
					const rep = await tr.sender.getStats();
					rep.forEach((r) => {
						if (r.type !== 'outbound-rtp') return;
						out.outbound.push(Object.assign({
							mid: tr.mid, kind: r.kind, packetsSent: r.packetsSent, bytesSent: r.bytesSent,
							framesEncoded: r.framesEncoded, frameWidth: r.frameWidth, frameHeight: r.frameHeight,
							framesPerSecond: r.framesPerSecond, encoderImplementation: r.encoderImplementation,
							qualityLimitationReason: r.qualityLimitationReason,
						}, codecOf(rep, r)));
					});
				}
				if (tr.receiver && tr.mid !== null) {
					const rep = await tr.receiver.getStats();
					rep.forEach((r) => {
						if (r.type !== 'inbound-rtp') return;
						const codec = codecOf(rep, r);
						out.inbound.push(Object.assign({
							mid: tr.mid, kind: r.kind, display: c ? c.peer : null, active: true,
							codec: codec.codecMime ? codec.codecMime.split('/')[1].toLowerCase() : null,
							packetsReceived: r.packetsReceived, packetsLost: r.packetsLost, bytesReceived: r.bytesReceived,
							jitter: r.jitter,
							framesDecoded: r.framesDecoded, framesDropped: r.framesDropped, keyFramesDecoded: r.keyFramesDecoded,
							frameWidth: r.frameWidth, frameHeight: r.frameHeight, framesPerSecond: r.framesPerSecond,
							audioLevel: r.audioLevel, totalAudioEnergy: r.totalAudioEnergy,
							totalSamplesReceived: r.totalSamplesReceived, concealedSamples: r.concealedSamples,
							decoderImplementation: r.decoderImplementation,
						}, codec));
					});
				}
			}
			out.sip.path = await selectedPair(pc);
		}
		return out;
	}
	window.callboxStats = callboxStats;

	// For each playing remote <video>: its size and the RGB of `points` pixels along the middle row.
	function callboxProbe(points) {
		points = points || 16;
		const res = [];
		const peer = state.call ? state.call.peer : null;
		for (const v of document.querySelectorAll('#remote video')) {
			const mid = v.id.replace('remote-', '');
			const w = v.videoWidth, h = v.videoHeight;
			if (!w || !h) { res.push({ mid, display: peer, width: 0, height: 0, row: [] }); continue; }
			const cv = document.createElement('canvas'); cv.width = w; cv.height = h;
			const g = cv.getContext('2d', { willReadFrequently: true });
			g.drawImage(v, 0, 0, w, h);
			const px = g.getImageData(0, Math.floor(h / 2), w, 1).data, row = [];
			for (let i = 0; i < points; i++) {
				const x = Math.floor((i + 0.5) * w / points) * 4;
				row.push([px[x], px[x + 1], px[x + 2]]);
			}
			res.push({ mid, display: peer, width: w, height: h, row });
		}
		return res;
	}
	window.callboxProbe = callboxProbe;

	// "local addr:port typ -> remote addr:port typ" of the PeerConnection's selected ICE candidate pair
	async function selectedPair(pc) {
		const rep = await pc.getStats();
		let pairId = null;
		rep.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
		const pair = pairId && rep.get(pairId);
		if (!pair) return null;
		const c = (id) => { const x = rep.get(id); return x ? (x.address + ':' + x.port + ' ' + x.candidateType) : '?'; };
		return c(pair.localCandidateId) + ' -> ' + c(pair.remoteCandidateId);
	}

	// Leave at once: destroy the Janus session (the plugin hangs up a call and forgets the registration).
	function callboxLeave() {
		return new Promise((resolve) => {
			if (!janus || state.phase === 'left') return resolve(false);
			let finished = false;
			const done = () => {
				if (finished) return;
				finished = true; state.registered = false;
				if (state.phase !== 'error') state.phase = 'left';
				note('left'); resolve(true);
			};
			janus.destroy({ cleanupHandles: true, notifyDestroyed: false, success: done, error: done });
			setTimeout(done, 2000);
		});
	}
	window.callboxLeave = callboxLeave;
	if (cfg.leaveafter > 0) setTimeout(callboxLeave, cfg.leaveafter * 1000);

	// Commands from a driver through the `control` file (see the header). A missing or half-written file is skipped.
	let controlSeq = 0;
	function pollControl() {
		const x = new XMLHttpRequest();
		x.open('GET', cfg.control + '?t=' + Date.now());
		x.onload = () => {
			let c = null;
			try { c = JSON.parse(x.responseText); } catch (e) { return; }
			if (!c || typeof c.seq !== 'number' || c.seq <= controlSeq) return;
			controlSeq = c.seq;
			note('control ' + c.seq + ': ' + c.command + (c.uri ? ' ' + c.uri : ''));
			if (c.command === 'call') doCall(c.uri);
			else if (c.command === 'answer') answer();
			else if (c.command === 'hangup') hangup();
			else if (c.command === 'leave') callboxLeave();
			else note('control: unknown command ' + c.command);
		};
		x.onerror = () => {};
		try { x.send(); } catch (e) { /* not readable (yet) */ }
	}
	if (cfg.control) setInterval(pollControl, 250);

	if (cfg.logstats > 0) {
		setInterval(() => {
			callboxStats().then((s) => { s.probe = callboxProbe(8); console.log('CALLBOX_STATS ' + JSON.stringify(s)); })
				.catch((e) => console.log('CALLBOX_STATS ' + JSON.stringify({ error: String(e) })));
		}, cfg.logstats);
	}

	window.addEventListener('load', () => {
		note('page loaded as ' + cfg.display + ' via ' + cfg.server);
		if (!Janus.isWebrtcSupported()) return fail('init', 'no WebRTC');
		Janus.init({ debug: cfg.debug ? 'all' : ['warn', 'error'], callback: start });
	});
})();
