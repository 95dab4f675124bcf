//! The one-time codes a mini-program hands over: from `wx.login()`, and from the
//! `getPhoneNumber` button. Checked for shape before any WeChat call.

use std::fmt;

/// The longest one-time code we accept. Real ones are 32 characters (login) or 64 (phone).
pub const MAX_JS_CODE_LEN: usize = 128;
/// Why a one-time code (from `wx.login()` or the phone button) was refused before any
/// WeChat call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCode {
    #[error("The request has no code.")]
    Missing,
    #[error("The code is longer than {MAX_JS_CODE_LEN} characters.")]
    TooLong,
    #[error("The code may only contain printable ASCII characters, without spaces.")]
    BadCharacters,
}

/// A one-time code's type: parsed by the one rule, read with `AsRef<str>`, and redacted in
/// `Debug` (codes are short-lived credentials: keep them out of logs).
macro_rules! one_time_code {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(Box<str>);

        impl $name {
            /// Accepts 1 to 128 printable ASCII characters, no spaces.
            pub fn parse(raw: Option<&str>) -> Result<Self, InvalidCode> {
                check_code(raw).map(|code| Self(code.into()))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

one_time_code!(
    /// The one-time code from `wx.login()`: 1 to 128 printable ASCII characters, no spaces.
    JsCode
);
one_time_code!(
    /// The one-time code from the `getPhoneNumber` button: the same shape as a [`JsCode`],
    /// but good only for `getuserphonenumber`.
    PhoneCode
);

fn check_code(raw: Option<&str>) -> Result<&str, InvalidCode> {
    let raw = raw.unwrap_or_default();
    if raw.trim().is_empty() {
        return Err(InvalidCode::Missing);
    }
    if raw.len() > MAX_JS_CODE_LEN {
        return Err(InvalidCode::TooLong);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidCode::BadCharacters);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_js_code_is_one_to_128_printable_characters() {
        assert!(JsCode::parse(Some("081AbCdE-x_y.z")).is_ok());
        assert!(JsCode::parse(Some(&"a".repeat(128))).is_ok());
        for (raw, expected) in [
            (None, InvalidCode::Missing),
            (Some(""), InvalidCode::Missing),
            (Some("   \t"), InvalidCode::Missing),
            (Some(&*"a".repeat(129)), InvalidCode::TooLong),
            (Some("with space"), InvalidCode::BadCharacters),
            (Some("tab\there"), InvalidCode::BadCharacters),
            (Some("non-ascii-码"), InvalidCode::BadCharacters),
        ] {
            assert_eq!(JsCode::parse(raw), Err(expected), "{raw:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn any_text_is_a_code_that_reads_back_or_a_refusal(raw in proptest::option::of(".{0,200}")) {
            if let Ok(code) = JsCode::parse(raw.as_deref()) {
                proptest::prop_assert_eq!(Some(code.as_ref()), raw.as_deref());
                proptest::prop_assert!(code.as_ref().bytes().all(|b| b.is_ascii_graphic()));
            }
            let phone = PhoneCode::parse(raw.as_deref()).map(|c| c.as_ref().to_owned());
            let login = JsCode::parse(raw.as_deref()).map(|c| c.as_ref().to_owned());
            proptest::prop_assert_eq!(phone, login, "both codes follow one rule");
        }
    }

    #[test]
    fn debug_output_hides_codes() {
        let code = JsCode::parse(Some("secret-code")).expect("code");
        assert!(!format!("{code:?}").contains("secret-code"));
        let code = PhoneCode::parse(Some("secret-phone-code")).expect("code");
        assert!(!format!("{code:?}").contains("secret-phone-code"));
    }
}
