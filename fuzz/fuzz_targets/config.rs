//! The config file parser and validation on arbitrary text: errors, never panics, and any
//! accepted configuration is inside the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlschat::config::{Argon2Settings, FileConfig, LimitSettings};

fuzz_target!(|text: &str| {
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    if let Ok(limits) = file.limits(&LimitSettings::default()) {
        limits.validate().expect("accepted limits validate");
        assert!(limits.max_prelogin <= limits.max_connections);
        assert!(limits.login_timeout.as_secs() <= 86_400);
    }
    let _ = file.hash_settings(&Argon2Settings::default());
    let _ = file.db_path(None);
});
