//! A party's roster of points of contact: the people behind its node, each
//! with a name, roles (technical, policy), languages and the fingerprints
//! of the operator certificates they use. It is a TOML document kept as a
//! C2SP signed note under the party's identity key, so only the holder of
//! that key (the designated official) can change it, and any peer can check
//! it. A node refuses state-changing operator calls from a certificate its
//! own roster does not name, and shows peers' acts with their people's names.

use std::collections::HashSet;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::keys::{IdentityKey, Keyring};
use crate::note::{NoteError, SignedNote};

/// The most contacts a roster may list.
pub const MAX_CONTACTS: usize = 64;

/// Why a roster was refused; each names the field or signer at fault.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// Not a signed note, or a bad signature by a known key.
    #[error("roster: {0}")]
    Note(#[from] NoteError),
    /// The text is not the roster's TOML schema.
    #[error("roster: not a roster document: {0}")]
    Toml(String),
    /// A field breaks its rule.
    #[error("roster field {field}: {reason}")]
    Field {
        /// The field at fault.
        field: String,
        /// Why.
        reason: String,
    },
    /// No key of the party the roster is for signed it.
    #[error(
        "roster of {party} is not signed by a key {party} holds in the agreement in force: only its identity key may change it"
    )]
    NotByParty {
        /// The party the roster says it is for.
        party: String,
    },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> RosterError {
    RosterError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// What a point of contact is for, as OSCE CBM 8 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactRole {
    /// Handles incidents: reads, acknowledges and answers notices.
    Technical,
    /// Speaks for the party: escalations are addressed to it.
    Policy,
}

impl ContactRole {
    /// The name used in the roster and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactRole::Technical => "technical",
            ContactRole::Policy => "policy",
        }
    }
}

/// One point of contact.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The person's name, as peers see it on what they sign.
    pub name: String,
    /// What they are a contact for.
    pub roles: Vec<ContactRole>,
    /// BCP 47 tags of the languages they work in.
    #[serde(default)]
    pub languages: Vec<String>,
    /// SHA-256 (hex) of the operator certificates they act with.
    #[serde(default)]
    pub certs: Vec<String>,
}

impl Contact {
    /// Whether the contact has `role`.
    pub fn has(&self, role: ContactRole) -> bool {
        self.roles.contains(&role)
    }

    /// The roles, comma separated.
    pub fn roles_text(&self) -> String {
        self.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// A roster's document.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// The party whose points of contact these are.
    pub party: String,
    /// Bumped on every change; peers keep only newer versions.
    pub version: u64,
    /// The points of contact.
    #[serde(rename = "contact")]
    pub contacts: Vec<Contact>,
}

impl Roster {
    /// Parses and checks a roster's TOML text.
    pub fn parse(text: &str) -> Result<Self, RosterError> {
        let roster: Roster = toml::from_str(text).map_err(|e| RosterError::Toml(e.to_string()))?;
        roster.check()?;
        Ok(roster)
    }

    fn check(&self) -> Result<(), RosterError> {
        if !crate::agreement::is_valid_party_id(&self.party) {
            return Err(field("party", format!("{:?} is not a party id", self.party)));
        }
        if self.version == 0 {
            return Err(field("version", "versions start at 1"));
        }
        if self.contacts.is_empty() || self.contacts.len() > MAX_CONTACTS {
            return Err(field("contact", format!("a roster lists 1 to {MAX_CONTACTS} contacts")));
        }
        let (mut names, mut certs) = (HashSet::new(), HashSet::new());
        for (i, c) in self.contacts.iter().enumerate() {
            let at = |what: &str| format!("contact[{i}].{what}");
            let name_ok = (1..=128).contains(&c.name.chars().count())
                && c.name.trim() == c.name
                && !c.name.chars().any(char::is_control);
            if !name_ok {
                return Err(field(
                    at("name"),
                    "1 to 128 characters, no control characters or outer spaces",
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(field(at("name"), format!("{:?} is listed twice", c.name)));
            }
            if c.roles.is_empty() {
                return Err(field(at("roles"), "at least one of \"technical\", \"policy\""));
            }
            for tag in &c.languages {
                crate::message::check_language("languages", tag).map_err(|e| field(at("languages"), e.to_string()))?;
            }
            for fp in &c.certs {
                if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(field(at("certs"), format!("{fp:?} is not 64 lowercase hex digits")));
                }
                if !certs.insert(fp.as_str()) {
                    return Err(field(
                        at("certs"),
                        format!("certificate {fp} is listed for two contacts"),
                    ));
                }
            }
        }
        for role in [ContactRole::Technical, ContactRole::Policy] {
            if !self.contacts.iter().any(|c| c.has(role)) {
                return Err(field("contact", format!("no contact has the {} role", role.as_str())));
            }
        }
        Ok(())
    }

    /// The contact who acts with the certificate of this fingerprint.
    pub fn contact_for(&self, fingerprint: &[u8; 32]) -> Option<&Contact> {
        let fp = hex::encode(fingerprint);
        self.contacts.iter().find(|c| c.certs.contains(&fp))
    }

    /// The contact of this name.
    pub fn contact(&self, name: &str) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.name == name)
    }

    /// The names of the contacts with `role`.
    pub fn names_with(&self, role: ContactRole) -> Vec<&str> {
        self.contacts
            .iter()
            .filter(|c| c.has(role))
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// A roster with its signatures, exactly as signed.
#[derive(Debug)]
pub struct SignedRoster {
    note: SignedNote,
    /// The roster it signs.
    pub roster: Roster,
}

impl SignedRoster {
    /// Parses a signed roster; its signatures are checked by [`SignedRoster::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Self, RosterError> {
        let note = SignedNote::parse(bytes)?;
        let roster = Roster::parse(note.text())?;
        Ok(Self { note, roster })
    }

    /// Checks `text` as a roster and signs it with `key`.
    pub fn sign(text: &str, key: &IdentityKey) -> Result<Self, RosterError> {
        let roster = Roster::parse(text)?;
        let mut note = SignedNote::new(text)?;
        note.sign(key)?;
        Ok(Self { note, roster })
    }

    /// The encoded note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }

    /// Checks that a key its party holds in `keyring`, valid at `at`, signed it.
    pub fn verify(&self, keyring: &Keyring, at: OffsetDateTime) -> Result<(), RosterError> {
        let party = &self.roster.party;
        let keys: Vec<_> = keyring
            .keys()
            .filter(|k| &k.party == party && k.valid_at(at))
            .map(|k| k.key.clone())
            .collect();
        match self.note.verify(&keys) {
            Ok(signed) if !signed.is_empty() => Ok(()),
            Ok(_) | Err(NoteError::NotSigned(_)) => Err(RosterError::NotByParty { party: party.clone() }),
            Err(e) => Err(e.into()),
        }
    }
}

/// The first roster `hotline init` writes: one contact, both roles, acting
/// with the operator certificate of this fingerprint.
pub fn initial(party: &str, contact: &str, operator_cert: &[u8; 32]) -> String {
    format!(
        "# {party}'s points of contact. Edit, bump the version, then: hotline roster set roster.toml --key identity.key\n\
         party = \"{party}\"\nversion = 1\n\n[[contact]]\nname = {}\nroles = [\"technical\", \"policy\"]\n\
         languages = [\"en\"]\ncerts = [\"{}\"]   # SHA-256 of the operator certificates this person uses\n",
        toml::Value::String(contact.to_owned()),
        hex::encode(operator_cert)
    )
}
