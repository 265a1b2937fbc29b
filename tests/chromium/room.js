// A foreign videoroom participant for callbox tests: publishes the fake camera + microphone into a Janus
// VideoRoom (janus.js 1.1.x, multistream API) and subscribes, on one subscriber handle, to every other publisher.
//
// URL query (all optional):
//   server   Janus WebSocket URL                 (default ws://127.0.0.1:18188)
//   room     numeric room id                     (default 1234)
//   pin      room PIN (sent with create and with both joins)
//   display  display name                        (default foreign-XXXX)
//   token    Janus signed token (token_auth)     (default none)
//   create   1: create the room first (427 "already exists" is fine), 0: join only (default 1)
//   adminkey the videoroom admin_key, sent with create (a Janus configured with one refuses create without it)
//   audio, video   0 to publish without that medium (default 1)
//   screen   1: also publish a second video (the fake camera again) described as "screen", the camera as "camera"
//   width, height, fps   capture constraints (default 320x240@15: cheap on 2 cores)
//   audioproc 1: keep the browser's echo cancellation / noise suppression / AGC (default off: they eat a test tone)
//   debug    1: janus.js logs everything to the console
//   leaveafter N: leave the room (destroy the Janus session) N s after loading
//   logstats N: every N ms print "CALLBOX_STATS <json>" with console.log (for a driver that only reads stderr)
//   control  FILE: a JSON file beside the page, read every 250 ms, through which a driver that has no DevTools
//            connection gives commands: {"seq": N, "command": "leave"} runs once per new seq. Over file:// this
//            needs Chromium's --allow-file-access-from-files (tests/src/chromium.rs passes it).
//
// Exposed to the test: window.callboxState (a plain object) and async window.callboxStats().
'use strict';

(function () {
	const q = new URLSearchParams(window.location.search);
	const int = (v, d) => (v === null || v === '' || isNaN(parseInt(v, 10))) ? d : parseInt(v, 10);
	const cfg = {
		server: q.get('server') || 'ws://127.0.0.1:18188',
		room: int(q.get('room'), 1234),
		pin: q.get('pin') || null,
		display: q.get('display') || ('foreign-' + Math.random().toString(36).slice(2, 6)),
		token: q.get('token') || null,
		create: q.get('create') !== '0',
		adminKey: q.get('adminkey') || null,
		audio: q.get('audio') !== '0',
		video: q.get('video') !== '0',
		screen: q.get('screen') === '1',
		width: int(q.get('width'), 320),
		height: int(q.get('height'), 240),
		fps: int(q.get('fps'), 15),
		audioproc: q.get('audioproc') === '1',
		debug: q.get('debug') === '1',
		logstats: int(q.get('logstats'), 0),
		leaveafter: int(q.get('leaveafter'), 0),
		control: q.get('control') || null,
	};

	const state = {
		phase: 'init',          // init -> connected -> joined -> publishing -> published ; or error
		error: null,
		room: cfg.room,
		display: cfg.display,
		myId: null,
		privateId: null,
		publisherIce: null,
		publisherUp: false,
		subscriberIce: null,
		subscriberUp: false,
		publishers: {},          // feed id -> { display, streams }
		subStreams: {},          // subscriber mid -> { feed_id, feed_display, type, codec, active }
		events: [],              // short log of what happened, for debugging a failed test
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
	function fail(what, err) {
		state.phase = 'error';
		state.error = what + ': ' + (err && err.message ? err.message : (typeof err === 'string' ? err : JSON.stringify(err)));
		note('FAIL ' + state.error);
	}

	let janus = null, pub = null, sub = null;
	let subCreating = false, subNegotiating = false;
	let pendingSubscribe = [];
	const subscribed = {};       // "feed:mid" -> true
	const opaqueId = 'callbox-foreign-' + Janus.randomString(8);

	function withPin(m) { if (cfg.pin) m.pin = cfg.pin; return m; }

	// ---- session and publisher handle ----
	function start() {
		janus = new Janus({
			server: cfg.server,
			iceServers: [],          // janus.js defaults to a public STUN server: never here
			token: cfg.token,
			success: () => { state.phase = 'connected'; note('session ' + janus.getSessionId()); attachPublisher(); },
			error: (e) => fail('session', e),
			destroyed: () => note('session destroyed'),
		});
	}

	function attachPublisher() {
		janus.attach({
			plugin: 'janus.plugin.videoroom',
			opaqueId: opaqueId,
			success: (h) => { pub = h; note('publisher handle ' + h.getId()); cfg.create ? createRoom() : join(); },
			error: (e) => fail('attach publisher', e),
			iceState: (s) => { state.publisherIce = s; note('publisher ICE ' + s); },
			webrtcState: (on) => {
				state.publisherUp = on;
				if (on) state.phase = 'published';
				note('publisher PeerConnection ' + (on ? 'up' : 'down'));
			},
			mediaState: (medium, on, mid) => note('Janus ' + (on ? 'receives' : 'stopped receiving') + ' our ' + medium + ' mid=' + mid),
			slowLink: (uplink, lost, mid) => note('slowlink publisher uplink=' + uplink + ' lost=' + lost + ' mid=' + mid),
			onmessage: onPublisherMessage,
			onlocaltrack: (track, on) => {
				if (!on || track.kind !== 'video') return;
				const v = document.createElement('video');
				v.muted = true; v.autoplay = true; v.playsInline = true;
				v.srcObject = new MediaStream([track]);
				document.getElementById('local').appendChild(v);
			},
			onremotetrack: () => {},
			oncleanup: () => { state.publisherUp = false; note('publisher cleanup'); },
		});
	}

	function createRoom() {
		const req = withPin({
			request: 'create', room: cfg.room, permanent: false, description: 'callbox test room',
			publishers: 16, audiocodec: 'opus', videocodec: 'vp8', bitrate: 512000,
		});
		if (cfg.adminKey) req.admin_key = cfg.adminKey;
		pub.send({
			message: req,
			success: (r) => {
				if (r && r.videoroom === 'created') note('room ' + cfg.room + ' created');
				else if (r && r.error_code === 427) note('room ' + cfg.room + ' exists already');
				else return fail('create room', r);
				join();
			},
			error: (e) => fail('create room', e),
		});
	}

	function join() {
		pub.send({
			message: withPin({ request: 'join', room: cfg.room, ptype: 'publisher', display: cfg.display }),
			error: (e) => fail('join', e),
		});
	}

	function onPublisherMessage(msg, jsep) {
		const ev = msg.videoroom;
		if (ev === 'joined') {
			state.myId = msg.id; state.privateId = msg.private_id; state.phase = 'joined';
			note('joined room ' + msg.room + ' as ' + msg.id);
			publish();
			if (msg.publishers) subscribeTo(msg.publishers);
		} else if (ev === 'destroyed') {
			fail('room', 'destroyed');
		} else if (ev === 'event') {
			if (msg.publishers) subscribeTo(msg.publishers);
			if (msg.leaving !== undefined || msg.unpublished !== undefined) {
				const gone = msg.leaving !== undefined ? msg.leaving : msg.unpublished;
				if (gone === 'ok') { note('we unpublished'); }
				else { note('publisher ' + gone + ' left'); forget(gone); }
			}
			if (msg.error) fail('videoroom', msg.error_code + ' ' + msg.error);
		}
		if (jsep) {
			pub.handleRemoteJsep({ jsep: jsep, error: (e) => fail('publisher answer', e) });
			if (cfg.audio && !msg.audio_codec) note('WARNING: our audio was rejected');
			if (cfg.video && !msg.video_codec) note('WARNING: our video was rejected');
		}
	}

	function publish() {
		const tracks = [];
		// No echo cancellation / noise suppression / AGC by default: noise suppression removes a steady test tone
		if (cfg.audio) tracks.push({
			type: 'audio', recv: false,
			capture: cfg.audioproc ? true : { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
		});
		if (cfg.video) tracks.push({
			type: 'video', recv: false,
			capture: { width: { ideal: cfg.width }, height: { ideal: cfg.height }, frameRate: { ideal: cfg.fps } },
		});
		if (cfg.screen) tracks.push({
			type: 'video', recv: false,
			capture: { width: { ideal: cfg.width }, height: { ideal: cfg.height }, frameRate: { ideal: cfg.fps } },
		});
		state.phase = 'publishing';
		pub.createOffer({
			tracks: tracks,
			success: (jsep) => {
				const message = { request: 'configure', audio: cfg.audio, video: cfg.video };
				if (cfg.screen) {
					// The mids of our video sections, in order: the camera first, the "screen" last.
					const mids = [];
					let video = false;
					for (const line of jsep.sdp.split(/\r?\n/)) {
						if (line.startsWith('m=')) video = line.startsWith('m=video');
						else if (video && line.startsWith('a=mid:')) mids.push(line.slice(6).trim());
					}
					if (mids.length >= 2) {
						message.descriptions = [
							{ mid: mids[0], description: 'camera' },
							{ mid: mids[mids.length - 1], description: 'screen' },
						];
					} else note('WARNING: no second video section for the screen share');
				}
				pub.send({
					message: message,
					jsep: jsep,
					error: (e) => fail('configure', e),
				});
			},
			error: (e) => fail('createOffer', e),
		});
	}

	// ---- one multistream subscriber handle for every other publisher ----
	function subscribeTo(list) {
		const add = [];
		for (const p of list) {
			if (p.dummy || p.id === state.myId) continue;
			state.publishers[p.id] = { display: p.display, streams: p.streams || [] };
			for (const s of (p.streams || [])) {
				const key = p.id + ':' + s.mid;
				if (s.disabled || subscribed[key]) continue;
				subscribed[key] = true;
				add.push({ feed: p.id, mid: s.mid });
			}
		}
		if (add.length === 0) return;
		note('subscribe to ' + JSON.stringify(add));
		if (subCreating || subNegotiating) { pendingSubscribe.push(...add); return; }
		if (sub) { sub.send({ message: { request: 'update', subscribe: add }, error: (e) => fail('update', e) }); return; }
		subCreating = true;
		janus.attach({
			plugin: 'janus.plugin.videoroom',
			opaqueId: opaqueId,
			success: (h) => {
				sub = h;
				note('subscriber handle ' + h.getId());
				sub.send({
					message: withPin({ request: 'join', room: cfg.room, ptype: 'subscriber', streams: add, private_id: state.privateId }),
					error: (e) => fail('subscriber join', e),
				});
			},
			error: (e) => fail('attach subscriber', e),
			iceState: (s) => { state.subscriberIce = s; note('subscriber ICE ' + s); },
			webrtcState: (on) => { state.subscriberUp = on; note('subscriber PeerConnection ' + (on ? 'up' : 'down')); },
			slowLink: (uplink, lost, mid) => note('slowlink subscriber uplink=' + uplink + ' lost=' + lost + ' mid=' + mid),
			onmessage: onSubscriberMessage,
			onlocaltrack: () => {},
			onremotetrack: onRemoteTrack,
			oncleanup: () => { state.subscriberUp = false; note('subscriber cleanup'); },
		});
	}

	function forget(feed) {
		for (const key of Object.keys(subscribed)) if (key.startsWith(feed + ':')) delete subscribed[key];
		delete state.publishers[feed];
		// Janus renegotiates the subscriber itself (an "updated" offer with the feed's streams inactive)
	}

	function flushPending() {
		if (!sub || subCreating || subNegotiating || pendingSubscribe.length === 0) return;
		const add = pendingSubscribe; pendingSubscribe = [];
		sub.send({ message: { request: 'update', subscribe: add }, error: (e) => fail('update', e) });
	}

	function onSubscriberMessage(msg, jsep) {
		const ev = msg.videoroom;
		if (msg.error) {
			// e.g. 428 "no such feed" when a publisher left before we subscribed: not fatal
			note('subscriber error ' + msg.error_code + ' ' + msg.error);
		}
		if (ev === 'attached') { subCreating = false; note('subscriber attached'); }
		else if (ev === 'updated') { note('subscriber updated'); }
		if (msg.streams) {
			for (const s of msg.streams) {
				state.subStreams[s.mid] = {
					feed_id: s.feed_id, feed_display: s.feed_display, type: s.type, codec: s.codec, active: s.active !== false,
				};
			}
		}
		if (jsep) {
			subNegotiating = true;
			sub.createAnswer({
				jsep: jsep,
				// only data named: offered audio/video are accepted recvonly, nothing is captured
				tracks: [{ type: 'data' }],
				success: (answer) => {
					sub.send({
						message: { request: 'start', room: cfg.room },
						jsep: answer,
						success: () => { subNegotiating = false; flushPending(); },
						error: (e) => { subNegotiating = false; fail('subscriber start', e); },
					});
				},
				error: (e) => { subNegotiating = false; fail('createAnswer', e); },
			});
		} else {
			flushPending();
		}
	}

	function onRemoteTrack(track, mid, on) {
		const id = 'remote-' + mid;
		const old = document.getElementById(id);
		if (!on) { if (old) old.remove(); note('remote track mid=' + mid + ' removed'); return; }
		if (old) return;
		const s = state.subStreams[mid] || {};
		note('remote ' + track.kind + ' track mid=' + mid + ' from feed ' + s.feed_id + ' (' + s.feed_display + ')');
		// Attach every remote track to a playing element: Chromium pulls (and so decodes / measures) audio only
		// for a sink, and an element keeps the video track's decoder busy as a real viewer would.
		const el = document.createElement(track.kind === 'video' ? 'video' : 'audio');
		el.id = id; el.autoplay = true; el.playsInline = true;
		if (track.kind === 'video') el.muted = true;
		el.srcObject = new MediaStream([track]);
		document.getElementById('remote').appendChild(el);
		el.play().catch((e) => note('play() mid=' + mid + ': ' + e.message));
	}

	// ---- stats for the test ----
	async function callboxStats() {
		const out = {
			t: Date.now(), phase: state.phase, error: state.error, room: state.room, display: state.display, myId: state.myId,
			publisherUp: state.publisherUp, subscriberUp: state.subscriberUp, outbound: [], inbound: [],
			// the other publishers this page knows from the room's events (they leave it on leaving/unpublished)
			publishers: Object.keys(state.publishers).map((id) => ({
				id: Number(id), display: state.publishers[id].display, streams: state.publishers[id].streams.length,
			})),
		};
		const ppc = pub && pub.webrtcStuff && pub.webrtcStuff.pc;
		if (ppc) {
			for (const tr of ppc.getTransceivers()) {
				if (!tr.sender || !tr.sender.track) continue;
				const rep = await tr.sender.getStats();
				rep.forEach((r) => {
					if (r.type !== 'outbound-rtp') return;
					out.outbound.push({
						mid: tr.mid, kind: r.kind, packetsSent: r.packetsSent, bytesSent: r.bytesSent,
						framesEncoded: r.framesEncoded, frameWidth: r.frameWidth, frameHeight: r.frameHeight,
						framesPerSecond: r.framesPerSecond, encoderImplementation: r.encoderImplementation,
						qualityLimitationReason: r.qualityLimitationReason,
					});
				});
			}
		}
		const spc = sub && sub.webrtcStuff && sub.webrtcStuff.pc;
		if (spc) {
			for (const tr of spc.getTransceivers()) {
				if (!tr.receiver || tr.mid === null) continue;
				const info = state.subStreams[tr.mid] || {};
				if (info.type === 'data') continue;
				const rep = await tr.receiver.getStats();
				rep.forEach((r) => {
					if (r.type !== 'inbound-rtp') return;
					out.inbound.push({
						mid: tr.mid, kind: r.kind, feed: info.feed_id, display: info.feed_display, active: info.active,
						codec: info.codec,
						packetsReceived: r.packetsReceived, packetsLost: r.packetsLost, bytesReceived: r.bytesReceived,
						jitter: r.jitter,
						framesDecoded: r.framesDecoded, framesDropped: r.framesDropped, keyFramesDecoded: r.keyFramesDecoded,
						frameWidth: r.frameWidth, frameHeight: r.frameHeight, framesPerSecond: r.framesPerSecond,
						audioLevel: r.audioLevel, totalAudioEnergy: r.totalAudioEnergy,
						totalSamplesReceived: r.totalSamplesReceived, concealedSamples: r.concealedSamples,
						decoderImplementation: r.decoderImplementation,
					});
				});
			}
		}
		out.publisherPath = ppc ? await selectedPair(ppc) : null;
		out.subscriberPath = spc ? await selectedPair(spc) : null;
		return out;
	}
	window.callboxStats = callboxStats;

	// What the remote videos show: for each playing remote <video>, its size and the RGB of `points` pixels evenly
	// spread along the middle row (a test can look for a camera's colour bars, or see a moving picture change).
	function callboxProbe(points) {
		points = points || 16;
		const res = [];
		for (const v of document.querySelectorAll('#remote video')) {
			const mid = v.id.replace('remote-', ''), info = state.subStreams[mid] || {};
			const w = v.videoWidth, h = v.videoHeight;
			if (!w || !h) { res.push({ mid, feed: info.feed_id, display: info.feed_display, width: 0, height: 0, row: [] }); continue; }
			const c = document.createElement('canvas'); c.width = w; c.height = h;
			const g = c.getContext('2d', { willReadFrequently: true });
			g.drawImage(v, 0, 0, w, h);
			const px = g.getImageData(0, Math.floor(h / 2), w, 1).data, row = [];
			for (let i = 0; i < points; i++) {
				const x = Math.floor((i + 0.5) * w / points) * 4;
				row.push([px[x], px[x + 1], px[x + 2]]);
			}
			res.push({ mid, feed: info.feed_id, display: info.feed_display, width: w, height: h, row });
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

	// Leave at once (destroys the Janus session: the room drops our publisher now; a Chromium that is just killed
	// stays in the room until Janus's reclaim_session_timeout, 30 s in config/janus, has passed).
	function callboxLeave() {
		return new Promise((resolve) => {
			if (!janus || state.phase === 'left') return resolve(false);
			let finished = false;
			const done = () => { if (finished) return; finished = true; state.phase = 'left'; note('left'); resolve(true); };
			// cleanupHandles: close our PeerConnections and stop the capture too (else they keep sending until ICE
			// consent fails), as a real client leaving does
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
			note('control ' + c.seq + ': ' + c.command);
			if (c.command === 'leave') callboxLeave();
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
		note('page loaded, room ' + cfg.room + ' as ' + cfg.display + ' via ' + cfg.server);
		if (!Janus.isWebrtcSupported()) return fail('init', 'no WebRTC');
		Janus.init({ debug: cfg.debug ? 'all' : ['warn', 'error'], callback: start });
	});
})();
