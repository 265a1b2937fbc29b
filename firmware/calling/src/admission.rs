//! Who may do what with the appliance, as pure logic: who may ring it (anyone else is refused with the configured
//! SIP code, without ringing), whose calls it answers on its own, and who may open the door with the code, per
//! direction of the call. Parties are named in `callbox.toml` as user ids, groups of users, phone numbers or
//! number prefixes, or every user of the service; the identities compared are the ones the SIP server
//! authenticated (`Identifier`s the client reports). Phone numbers arrive through the PSTN trunk, whose caller id
//! is not authenticated: they are matched only where the config names them, never by "every user".

use crate::Identifier;

/// One way to name parties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// Every user of the service (`"any-user"`); never a phone number.
    AnyUser,
    /// One user or phone number.
    Exactly(Identifier),
    /// Phone numbers starting with these digits (`"+4930*"`: the `+` and the digits before the `*`).
    NumberPrefix(String),
}

impl Party {
    /// A party as written in `callbox.toml`: `"any-user"`, a user id, a phone number (`+4930123456`, or national
    /// with `country_code`), or a number prefix ending in `*` (`"+4930*"`, written with its country code).
    pub fn parse(text: &str, country_code: Option<&str>) -> Result<Party, String> {
        let text = text.trim();
        if text == "any-user" {
            return Ok(Party::AnyUser);
        }
        if let Some(prefix) = text.strip_suffix('*') {
            let digits = prefix.strip_prefix('+').ok_or_else(|| {
                format!("'{text}': a number prefix is written with '+' and its country code ('+4930*')")
            })?;
            if digits.is_empty() || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("'{text}': a number prefix is '+' then 1 to 15 digits, then '*'"));
            }
            return Ok(Party::NumberPrefix(prefix.to_owned()));
        }
        Identifier::parse(text, country_code).map(Party::Exactly).map_err(|e| e.to_string())
    }

    fn matches(&self, who: &Identifier) -> bool {
        match self {
            Party::AnyUser => !who.is_phone(),
            Party::Exactly(id) => id == who,
            Party::NumberPrefix(prefix) => who.is_phone() && who.as_str().starts_with(prefix.as_str()),
        }
    }
}

/// A list of parties (groups already expanded); empty: nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties(Vec<Party>);

impl Parties {
    /// Nobody.
    pub fn nobody() -> Self {
        Parties(Vec::new())
    }

    /// Every user of the service (no phone number).
    pub fn any_user() -> Self {
        Parties(vec![Party::AnyUser])
    }

    /// These parties.
    pub fn of(parties: Vec<Party>) -> Self {
        Parties(parties)
    }

    /// Whether `who` is one of them.
    pub fn contains(&self, who: &Identifier) -> bool {
        self.0.iter().any(|p| p.matches(who))
    }

    /// Whether the list names nobody.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the list lets in callers the config does not name one by one (every user, a number prefix).
    pub fn is_broad(&self) -> bool {
        self.0.iter().any(|p| !matches!(p, Party::Exactly(_)))
    }
}

/// Which way a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The far end called the appliance.
    CallIn,
    /// The appliance called the far end (the doorbell's call).
    CallOut,
}

/// SIP codes a refused caller may be given (`callbox.toml` `[admission] refuse_code`).
pub const REFUSE_CODES: [u16; 4] = [403, 480, 486, 603];

/// The appliance's admission policy. The default is the shipped one: every user of the service may ring (no
/// phone number), nothing is answered on its own, and nobody opens the door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Who may ring the appliance.
    pub callers: Parties,
    /// The SIP code the others are refused with (one of [`REFUSE_CODES`]).
    pub refuse_code: u16,
    /// Whose calls are answered on their own (with the behaviour's auto-answer delay).
    pub auto_answer: Parties,
    /// Who may open the door with the code in calls they placed to the appliance.
    pub door_openers_calling_in: Parties,
    /// Who may open the door with the code in calls the appliance placed to them.
    pub door_openers_called: Parties,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            callers: Parties::any_user(),
            refuse_code: 603,
            auto_answer: Parties::nobody(),
            door_openers_calling_in: Parties::nobody(),
            door_openers_called: Parties::nobody(),
        }
    }
}

/// What becomes of an incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// It rings (and is answered on its own when `auto_answer`).
    Ring { auto_answer: bool },
    /// It is refused with this SIP code, without ringing.
    Refuse(u16),
}

impl Admission {
    /// An incoming call from `from`.
    pub fn incoming(&self, from: &Identifier) -> Admit {
        if !self.callers.contains(from) {
            return Admit::Refuse(self.refuse_code);
        }
        Admit::Ring { auto_answer: self.auto_answer.contains(from) }
    }

    /// Whether `peer` may open the door with the code in a call that went `direction`.
    pub fn may_open(&self, peer: &Identifier, direction: Direction) -> bool {
        match direction {
            Direction::CallIn => self.door_openers_calling_in.contains(peer),
            Direction::CallOut => self.door_openers_called.contains(peer),
        }
    }
}

#[cfg(test)]
mod tests;
