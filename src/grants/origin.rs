//! How a grant was made, for `knockctl list` and the metrics: derived from
//! its [`Holder`], so the table keeps one key per grant and no extra field.
//! A new origin (the fleet's) gets its own reserved holder and a variant.

use super::{Holder, MANUAL, SPA};

/// How a grant was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// A door's knock sequence.
    Knock,
    /// A single packet authorization.
    Spa,
    /// An operator, over the control socket.
    Manual,
}

impl Origin {
    /// The origin of a grant held by `holder`.
    pub fn of(holder: Holder) -> Self {
        match holder {
            SPA => Origin::Spa,
            MANUAL => Origin::Manual,
            _ => Origin::Knock,
        }
    }

    /// Its name in replies, logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Knock => "knock",
            Origin::Spa => "spa",
            Origin::Manual => "manual",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
