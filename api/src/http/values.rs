//! The closed sets of values the API accepts. serde names the allowed values
//! in its error ("unknown variant `x`, expected one of …"), which the 422
//! passes on with the field.

use serde::Deserialize;

macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }
    };
}
pub(crate) use closed_set;

closed_set!(
    /// The platform a plugin runs on; `generic` is a plain PHP/JS site.
    Cms {
        Woocommerce = "woocommerce",
        Prestashop = "prestashop",
        Shopify = "shopify",
        Magento = "magento",
        Generic = "generic",
    }
);

closed_set!(Environment {
    Production = "production",
    Staging = "staging",
    Development = "development",
    Test = "test",
});

closed_set!(EventType {
    PaymentSuccess = "payment_success",
    PaymentFailed = "payment_failed",
    Error = "error",
    Warning = "warning",
    Info = "info",
});

closed_set!(Severity {
    Debug = "debug",
    Info = "info",
    Warning = "warning",
    Error = "error",
    Critical = "critical",
});

closed_set!(Status {
    Active = "active",
    Outdated = "outdated",
    Blocked = "blocked",
    Error = "error",
});

impl EventType {
    /// The severity of an event that does not state one.
    pub fn default_severity(self) -> Severity {
        match self {
            Self::PaymentSuccess | Self::Info => Severity::Info,
            Self::PaymentFailed | Self::Error => Severity::Error,
            Self::Warning => Severity::Warning,
        }
    }
}
