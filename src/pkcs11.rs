//! Identity keys in a hardware security module: a party's Ed25519 key held
//! on a PKCS#11 token (through `cryptoki`), used with `CKM_EDDSA` so the
//! private key never leaves the token. The node, `init` and every command
//! that signs reach it through `IdentityKey` (`keys.rs`), as they reach a
//! key file; only opening it differs. The PIN comes from a file or an
//! environment variable, never the command line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

/// Where a key on a token is, and how to log in to it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRef {
    /// The PKCS#11 module (a shared library, such as SoftHSM's `libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The key's label (its private and public objects share it).
    pub key: String,
    /// Where the user PIN is read from.
    pub pin: PinSource,
}

/// Where a token's PIN is read from: never the command line, where other
/// users of the machine could see it.
#[derive(Clone, Debug, PartialEq)]
pub enum PinSource {
    /// A file holding the PIN (its first line); group and others must not read it.
    File(PathBuf),
    /// An environment variable holding it.
    Env(String),
}

/// Why a key on a token could not be opened or used, naming the module and token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The module, the token, the key or the PIN is not as configured.
    #[error("PKCS#11 module {module}, token {token:?}: {why}")]
    Open {
        /// The module's path.
        module: String,
        /// The token's label.
        token: String,
        /// What went wrong, in words.
        why: String,
    },
    /// The token refused to sign (removed, or logged out).
    #[error("signing on token {token:?}: {why}")]
    Sign {
        /// The token's label.
        token: String,
        /// The token's answer.
        why: String,
    },
}

/// An open key on a token. Signing goes through one session at a time (a
/// PKCS#11 session is not shared between threads).
pub struct TokenKey {
    session: Mutex<Session>,
    key: ObjectHandle,
    token: String,
    public: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({:?})", self.token)
    }
}

/// Each module is loaded and initialised once per process, whatever number
/// of keys (a node's current and next, several nodes in a test) use it.
fn module(path: &Path) -> Result<Pkcs11, String> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = loaded.get(path) {
        return Ok(p.clone());
    }
    let p = Pkcs11::new(path).map_err(|e| format!("cannot load the module: {e}"))?;
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| format!("cannot initialise the module: {e}"))?;
    loaded.insert(path.to_owned(), p.clone());
    Ok(p)
}

impl TokenRef {
    fn pin(&self) -> Result<String, String> {
        match &self.pin {
            PinSource::Env(var) => std::env::var(var).map_err(|_| format!("the PIN variable {var} is not set")),
            PinSource::File(path) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "the PIN file {} is readable by group or others; run: chmod 600 {}",
                        path.display(),
                        path.display()
                    ));
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading the PIN file {}: {e}", path.display()))?;
                Ok(text.lines().next().unwrap_or_default().to_owned())
            }
        }
    }

    /// Logs in to the token and finds the key.
    pub fn open(&self) -> Result<Arc<TokenKey>, TokenError> {
        let fail = |why: String| TokenError::Open {
            module: self.module.display().to_string(),
            token: self.token.clone(),
            why,
        };
        let p = module(&self.module).map_err(fail)?;
        let slots = p
            .get_slots_with_token()
            .map_err(|e| fail(format!("cannot list its slots: {e}")))?;
        let slot = slots
            .into_iter()
            .find(|s| p.get_token_info(*s).is_ok_and(|t| t.label().trim_end() == self.token))
            .ok_or_else(|| fail("no such token is present".into()))?;
        let session = p
            .open_ro_session(slot)
            .map_err(|e| fail(format!("cannot open a session: {e}")))?;
        let pin = AuthPin::new(self.pin().map_err(fail)?.into());
        use cryptoki::error::{Error, RvError};
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => {}
            // Another key of this token in this process logged in already: the login is shared.
            Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(Error::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _)) => {
                return Err(fail("login refused: the PIN is wrong".into()));
            }
            Err(Error::Pkcs11(RvError::PinLocked, _)) => return Err(fail("login refused: the PIN is locked".into())),
            Err(e) => return Err(fail(format!("login refused: {e}"))),
        }
        let find = |class| {
            session
                .find_objects(&[Attribute::Class(class), Attribute::Label(self.key.as_bytes().to_vec())])
                .map_err(|e| fail(format!("looking for key {:?}: {e}", self.key)))
        };
        let key = *find(ObjectClass::PRIVATE_KEY)?
            .first()
            .ok_or_else(|| fail(format!("no private key labelled {:?}", self.key)))?;
        let public = *find(ObjectClass::PUBLIC_KEY)?
            .first()
            .ok_or_else(|| fail(format!("no public key labelled {:?}", self.key)))?;
        let point = session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(|e| fail(format!("reading the public key: {e}")))?;
        let public = point
            .iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => ed25519_point(p),
                _ => None,
            })
            .ok_or_else(|| fail(format!("key {:?} is not an Ed25519 key", self.key)))?;
        Ok(Arc::new(TokenKey {
            session: Mutex::new(session),
            key,
            token: self.token.clone(),
            public,
        }))
    }
}

/// An Edwards point as tokens give it: DER OCTET STRING (PKCS#11 3.0), or the 32 bytes alone.
fn ed25519_point(p: &[u8]) -> Option<[u8; 32]> {
    match p {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        raw => raw.try_into().ok(),
    }
}

impl TokenKey {
    /// The public key, as the token holds it.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Signs `msg` on the token with pure Ed25519 (RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; 64], TokenError> {
        let fail = |why: String| TokenError::Sign {
            token: self.token.clone(),
            why,
        };
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let sig = session
            .sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Ed25519)),
                self.key,
                msg,
            )
            .map_err(|e| fail(e.to_string()))?;
        sig.try_into()
            .map_err(|s: Vec<u8>| fail(format!("a signature of {} bytes, not 64", s.len())))
    }
}
