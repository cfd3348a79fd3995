//! The parts of a Compose file that decide which GPUs a container gets, with their places.
//!
//! Parsed with serde-saphyr into permissive structs: only the keys the lint reads are typed,
//! everything else is ignored, since Compose has far more keys than GPU routing needs.
//! Anchors, aliases and merge keys (`<<: *common`) are resolved by the parser; every value
//! that a finding can point at is `Spanned`, which keeps both where it is written (`defined`)
//! and where a service picks it up (`referenced`, the `<<` or alias line).

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Deserialize)]
pub struct ComposeFile {
    pub services: Option<BTreeMap<String, Service>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    #[serde(deserialize_with = "present")]
    pub runtime: Option<Spanned<Name>>,
    pub environment: Option<Spanned<Environment>>,
    pub command: Option<Spanned<CommandLine>>,
    pub entrypoint: Option<Spanned<CommandLine>>,
    pub deploy: Option<Deploy>,
    /// The service-level `gpus` attribute (Compose 2.30): `all`, or device requests with an
    /// implicit `gpu` capability.
    pub gpus: Option<Spanned<Gpus>>,
    /// `devices`, for CDI names such as `nvidia.com/gpu=0`.
    pub devices: Option<Vec<Spanned<MaybeString>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Deploy {
    pub resources: Option<Resources>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub reservations: Option<Reservations>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Reservations {
    pub devices: Option<Vec<Spanned<DeviceRequest>>>,
}

/// One entry of `deploy.resources.reservations.devices` (or of `gpus:`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeviceRequest {
    pub driver: Option<Spanned<String>>,
    #[serde(deserialize_with = "present")]
    pub count: Option<Spanned<Count>>,
    pub device_ids: Option<Spanned<Vec<Spanned<Scalar>>>>,
    pub capabilities: Option<Spanned<Vec<Scalar>>>,
}

/// `count: all` or `count: 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    All,
    /// `count: -1`, which Docker reads as all GPUs (compose-go maps `all` to -1).
    MinusOne,
    N(u64),
}

/// A key that is written must have a value: `count:` with nothing after it is a mistake,
/// not "no count" (serde's `Option` would read it as absent).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A name such as `runtime: nvidia`: a string, never a number or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(pub String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name such as `nvidia` or `runc`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `gpus: all` or a list of device requests.
#[derive(Debug)]
pub enum Gpus {
    All,
    Requests(Vec<Spanned<DeviceRequest>>),
}

/// `environment:` as a list (`- KEY=VAL`, `- KEY`) or a map (`KEY: VAL`, `KEY:`).
#[derive(Debug)]
pub enum Environment {
    List(Vec<Spanned<Scalar>>),
    Map(Vec<(String, Spanned<Option<Scalar>>)>),
}

/// `command:` / `entrypoint:` as one string (split like a shell would) or a list.
#[derive(Debug)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<Spanned<Scalar>>),
}

/// A YAML scalar of any type, as the text Compose would pass on (`2`, `true`, `GPU-…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

/// A string, or `None` for any other node (the long syntax of `devices`, for instance).
#[derive(Debug)]
pub struct MaybeString(pub Option<String>);

struct ScalarVisitor;

impl<'de> de::Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

impl<'de> Deserialize<'de> for MaybeString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = MaybeString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a device")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MaybeString, E> {
                Ok(MaybeString(Some(v.to_string())))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<MaybeString, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeString(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all` or a number of GPUs")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count::N(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                if v == -1 {
                    return Ok(Count::MinusOne);
                }
                u64::try_from(v)
                    .map(Count::N)
                    .map_err(|_| E::custom("`count` must be `all` or a number of GPUs"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
                match v.trim() {
                    "all" => Ok(Count::All),
                    n => n.parse().map(Count::N).map_err(|_| {
                        E::custom(format!("`count: {v}`: write `all` or a number of GPUs"))
                    }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Gpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Gpus;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all` or a list of device requests")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Gpus, E> {
                if v.trim() == "all" {
                    Ok(Gpus::All)
                } else {
                    Err(E::custom(format!(
                        "`gpus: {v}`: write `all` or a list of device requests"
                    )))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<Gpus, A::Error> {
                seq(s).map(Gpus::Requests)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Environment;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of `KEY=VALUE` or a map of KEY: VALUE")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<Environment, A::Error> {
                seq(s).map(Environment::List)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Environment, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<Scalar>()? {
                    v.push((k.0, m.next_value()?));
                }
                Ok(Environment::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = CommandLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandLine, E> {
                Ok(CommandLine::Shell(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<CommandLine, A::Error> {
                seq(s).map(CommandLine::Exec)
            }
        }
        d.deserialize_any(V)
    }
}

/// The elements of a sequence, for the visitors above that take a list as one of two forms.
fn seq<'de, T: Deserialize<'de>, A: de::SeqAccess<'de>>(mut s: A) -> Result<Vec<T>, A::Error> {
    let mut v = Vec::new();
    while let Some(x) = s.next_element()? {
        v.push(x);
    }
    Ok(v)
}
