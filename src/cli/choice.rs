//! Flags whose value is one of a protocol enum's (`--severity`, `--tlp`,
//! `--category`, `--kind`, `--status`, `--reason`, `--exercise`): clap
//! value enums drawn from the generated types, so help and errors list the
//! allowed values, written as the protocol names them, in lower case with
//! dashes (`amber-strict`; `amber+strict` is accepted too), in any case
//! (each flag sets `ignore_case`: `--severity HIGH` is high).

use clap::builder::PossibleValue;
use hotline::proto::{Category, Exercise, NoticeKind, ReasonCode, ResponseStatus, Severity, Tlp};

/// A protocol enum's value, as a flag takes it.
#[derive(Clone, Copy, Debug)]
pub struct Choice<T>(pub T);

/// A generated protocol enum: its values (the unspecified one left out)
/// and the prefix its names carry.
pub trait ProtoEnum: Copy + Send + Sync + 'static {
    /// What every value's protocol name starts with, such as `SEVERITY_`.
    const PREFIX: &'static str;
    /// Every value but the unspecified one.
    fn all() -> &'static [Choice<Self>];
    /// The protocol name, such as `SEVERITY_HIGH`.
    fn proto_name(self) -> &'static str;
}

macro_rules! proto_enum {
    ($($t:ty => $prefix:literal),* $(,)?) => {$(
        impl ProtoEnum for $t {
            const PREFIX: &'static str = $prefix;
            fn all() -> &'static [Choice<Self>] {
                static ALL: std::sync::LazyLock<Vec<Choice<$t>>> = std::sync::LazyLock::new(|| {
                    (1..64).filter_map(|i| <$t>::try_from(i).ok()).map(Choice).collect()
                });
                &ALL
            }
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
        }
    )*};
}

proto_enum!(
    Category => "CATEGORY_",
    Exercise => "EXERCISE_",
    NoticeKind => "NOTICE_KIND_",
    ReasonCode => "REASON_CODE_",
    ResponseStatus => "RESPONSE_STATUS_",
    Severity => "SEVERITY_",
    Tlp => "TLP_",
);

impl<T: ProtoEnum> clap::ValueEnum for Choice<T> {
    fn value_variants<'a>() -> &'a [Self] {
        T::all()
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let name = self.0.proto_name();
        let name = name
            .strip_prefix(T::PREFIX)
            .unwrap_or(name)
            .to_lowercase()
            .replace('_', "-");
        let value = PossibleValue::new(name.clone());
        Some(match name.contains('-') {
            true => value.alias(name.replace('-', "+")),
            false => value,
        })
    }
}

impl<T: ProtoEnum> Choice<T> {
    /// The value as the protocol numbers it.
    pub fn number(self) -> i32
    where
        T: Into<i32>,
    {
        self.0.into()
    }
}
