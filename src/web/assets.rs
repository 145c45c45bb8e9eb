//! The page, its script and its style, embedded in the binary. Script and style are served
//! under names that carry a hash of their content, so browsers may cache them for good and a
//! new version is fetched as soon as the page names it.

use std::fmt::Write as _;
use std::sync::LazyLock;

use bytes::Bytes;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

/// One file as served.
pub struct Asset {
    /// Where it is served (`/app.3f2a9c1e.js`).
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: Bytes,
}

/// The page and the files it names.
pub struct Pages {
    /// `/`: the page, naming the hashed files.
    pub index: Asset,
    files: Vec<Asset>,
}

impl Pages {
    /// The file served at `path`, if any.
    pub fn file(&self, path: &str) -> Option<&Asset> {
        self.files.iter().find(|a| a.path == path)
    }
}

/// Built on first use: hashing and one substitution per file.
pub fn pages() -> &'static Pages {
    static PAGES: LazyLock<Pages> = LazyLock::new(|| {
        let files = vec![
            hashed("app", "js", "text/javascript; charset=utf-8", APP_JS),
            hashed("app", "css", "text/css; charset=utf-8", APP_CSS),
        ];
        let index = INDEX_HTML
            .replace("{{app.js}}", &files[0].path)
            .replace("{{app.css}}", &files[1].path);
        Pages {
            index: Asset {
                path: "/".into(),
                content_type: "text/html; charset=utf-8",
                body: Bytes::from(index),
            },
            files,
        }
    });
    &PAGES
}

fn hashed(stem: &str, ext: &str, content_type: &'static str, text: &'static str) -> Asset {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut path = format!("/{stem}.");
    for b in &digest.as_ref()[..4] {
        let _ = write!(path, "{b:02x}");
    }
    path.push('.');
    path.push_str(ext);
    Asset {
        path,
        content_type,
        body: Bytes::from_static(text.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_hashed_files_it_is_served_with() {
        let pages = pages();
        let index = std::str::from_utf8(&pages.index.body).unwrap();
        for asset in &pages.files {
            assert!(index.contains(&asset.path), "{} not named", asset.path);
            assert_eq!(
                asset.path.len(),
                "/app.12345678.js".len() + usize::from(asset.path.ends_with(".css"))
            );
        }
        assert!(!index.contains("{{"));
    }
}
