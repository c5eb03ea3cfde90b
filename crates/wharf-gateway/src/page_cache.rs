//! Rendered simple-API pages, kept per (page, format, base URL) with the serial they were
//! rendered at. A request still reads the current serial from the index (one small query), so
//! a page is never served stale, on this gateway or after an upload through another one; only
//! the file listing, the sorting, the rendering and the ETag are saved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Bound on the bytes of cached bodies; the cache starts over when it is reached.
const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

/// One rendered page.
#[derive(Debug)]
pub(crate) struct CachedPage {
    /// What the page was rendered from: the project's (or index's) serial and status.
    pub(crate) version: (i64, String),
    pub(crate) body: bytes::Bytes,
    pub(crate) etag: String,
}

/// Which page: `None` for the root index, else the normalized project name; the response
/// format; the base URL of its links.
type PageKey = (Option<String>, &'static str, String);

#[derive(Debug, Default)]
struct Pages {
    pages: HashMap<PageKey, Arc<CachedPage>>,
    bytes: usize,
}

/// The gateway's page cache (shared by its request handlers).
#[derive(Debug, Default, Clone)]
pub(crate) struct PageCache {
    inner: Arc<Mutex<Pages>>,
}

impl PageCache {
    /// The cached page for `key` if it was rendered at `version`.
    pub(crate) fn get(&self, key: &PageKey, version: &(i64, String)) -> Option<Arc<CachedPage>> {
        let pages = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        pages
            .pages
            .get(key)
            .filter(|page| &page.version == version)
            .cloned()
    }

    /// Keeps `page` for `key` (replacing an older rendering).
    pub(crate) fn put(&self, key: PageKey, page: Arc<CachedPage>) {
        let mut pages = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let size = page.body.len() + page.etag.len();
        if size > MAX_CACHED_BYTES / 4 {
            return;
        }
        if pages.bytes + size > MAX_CACHED_BYTES {
            pages.pages.clear();
            pages.bytes = 0;
        }
        if let Some(old) = pages.pages.insert(key, page) {
            pages.bytes -= old.body.len() + old.etag.len();
        }
        pages.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(serial: i64, body: &str) -> Arc<CachedPage> {
        Arc::new(CachedPage {
            version: (serial, "active".to_owned()),
            body: bytes::Bytes::from(body.to_owned()),
            etag: "\"e\"".to_owned(),
        })
    }

    #[test]
    fn a_page_is_served_only_at_the_serial_it_was_rendered_at() {
        let cache = PageCache::default();
        let key = (Some("demo".to_owned()), "text/html", "http://h".to_owned());
        assert!(cache.get(&key, &(1, "active".to_owned())).is_none());
        cache.put(key.clone(), page(1, "one"));
        assert_eq!(
            cache
                .get(&key, &(1, "active".to_owned()))
                .map(|p| p.body.clone()),
            Some(bytes::Bytes::from("one"))
        );
        assert!(cache.get(&key, &(2, "active".to_owned())).is_none());
        assert!(cache.get(&key, &(1, "quarantined".to_owned())).is_none());
        let other_base = (Some("demo".to_owned()), "text/html", "https://h".to_owned());
        assert!(cache.get(&other_base, &(1, "active".to_owned())).is_none());
        cache.put(key.clone(), page(2, "two"));
        assert_eq!(cache.inner.lock().unwrap().bytes, 3 + 3);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = PageCache::default();
        let big = "x".repeat(MAX_CACHED_BYTES / 8);
        for index in 0..20 {
            cache.put(
                (Some(format!("p{index}")), "text/html", String::new()),
                page(1, &big),
            );
        }
        assert!(cache.inner.lock().unwrap().bytes <= MAX_CACHED_BYTES);
    }
}
