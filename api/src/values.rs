//! The closed sets of values the API accepts are enums made with [`closed_set!`]. serde
//! names the allowed values in its error ("unknown variant `x`, expected one of …"), which
//! the 422 passes on with the field, and the OpenAPI document lists them as the schema's
//! `enum`. (The platform is the engine's own `Platform`; `openapi::PlatformName` is its
//! schema.)

macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the order they are declared (what a console form offers;
            /// not every set has one).
            #[allow(dead_code)]
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value whose text is `text` (what a stored column reads back as, with
            /// `db::text_column!`).
            #[allow(dead_code)]
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        // By hand: utoipa's derive does not read a `rename` whose text a macro passes in,
        // and would list the variants' Rust names.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use closed_set;
