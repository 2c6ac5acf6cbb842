//! The only network access scripts have: HTTP(S) GET to allowlisted hosts, with a
//! timeout, a response-size cap, no redirects (a redirect could leave the allowlist)
//! and an LRU response cache.

use std::io::Read;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use url::Url;

use super::ServiceError;

/// Settings of the script HTTP client.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Hosts scripts may reach: exact names (`en.wikipedia.org`, `127.0.0.1`) or
    /// `*.example.org` for the domain and its subdomains. Any port.
    pub allow_hosts: Vec<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_bytes: usize,
    /// Number of responses kept in the cache (0 disables it).
    pub cache_entries: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allow_hosts: vec!["en.wikipedia.org".into(), "api.stackexchange.com".into()],
            timeout: Duration::from_secs(10),
            max_bytes: 2 * 1024 * 1024,
            cache_entries: 1000,
        }
    }
}

/// Allowlisted, cached HTTP GET.
pub struct HttpClient {
    config: HttpConfig,
    agent: ureq::Agent,
    cache: Option<Mutex<LruCache<String, Arc<String>>>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.config)
            .finish()
    }
}

impl HttpClient {
    /// A client with `config`.
    pub fn new(config: HttpConfig) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(config.timeout)
            .redirects(0)
            .user_agent(concat!("neuron/", env!("CARGO_PKG_VERSION")))
            .build();
        let cache = NonZeroUsize::new(config.cache_entries).map(|n| Mutex::new(LruCache::new(n)));
        Self {
            config,
            agent,
            cache,
        }
    }

    /// The client's settings.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Checks that `url` is http(s) to an allowlisted host; returns the parsed URL.
    pub fn check(&self, url: &str) -> Result<Url, ServiceError> {
        let err = |message: String| ServiceError::Http {
            url: url.to_string(),
            message,
        };
        let parsed = Url::parse(url).map_err(|e| err(format!("invalid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(err(format!("scheme `{}` is not allowed", parsed.scheme())));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| err("URL has no host".into()))?
            .to_ascii_lowercase();
        let allowed = self.config.allow_hosts.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            match entry.strip_prefix("*.") {
                Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
                None => host == entry,
            }
        });
        if !allowed {
            return Err(err(format!(
                "host `{host}` is not on the allowlist {:?}",
                self.config.allow_hosts
            )));
        }
        Ok(parsed)
    }

    /// GETs `url` with `query` appended, returning the body as text (cached). The
    /// request takes at most the configured timeout, and at most `within` when given
    /// (a calling hook's time left).
    pub fn get_text(
        &self,
        url: &str,
        query: &[(String, String)],
        within: Option<Duration>,
    ) -> Result<Arc<String>, ServiceError> {
        let mut parsed = self.check(url)?;
        if !query.is_empty() {
            parsed.query_pairs_mut().extend_pairs(query);
        }
        let key = parsed.to_string();
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
        {
            return Ok(hit.clone());
        }
        let err = |message: String| ServiceError::Http {
            url: key.clone(),
            message,
        };
        let timeout = within.map_or(self.config.timeout, |w| w.min(self.config.timeout));
        if timeout.is_zero() {
            return Err(err("no time left for the request".into()));
        }
        let response = self
            .agent
            .get(&key)
            .timeout(timeout)
            .call()
            .map_err(|e| match e {
                ureq::Error::Status(code, _) => err(format!("HTTP status {code}")),
                ureq::Error::Transport(t) => err(t.to_string()),
            })?;
        if (300..400).contains(&response.status()) {
            return Err(err(format!(
                "redirect ({}) not followed",
                response.status()
            )));
        }
        let mut body = Vec::new();
        response
            .into_reader()
            .take(self.config.max_bytes as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| err(format!("reading body: {e}")))?;
        if body.len() > self.config.max_bytes {
            return Err(err(format!(
                "response larger than the {} byte cap",
                self.config.max_bytes
            )));
        }
        let text = Arc::new(String::from_utf8_lossy(&body).into_owned());
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(key, text.clone());
        }
        Ok(text)
    }

    /// [`HttpClient::get_text`], the body parsed as JSON.
    pub fn get_json(
        &self,
        url: &str,
        query: &[(String, String)],
        within: Option<Duration>,
    ) -> Result<serde_json::Value, ServiceError> {
        let text = self.get_text(url, query, within)?;
        serde_json::from_str(&text).map_err(|e| ServiceError::Http {
            url: url.to_string(),
            message: format!("response is not JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_exact_and_wildcard_hosts_only() {
        let c = HttpClient::new(HttpConfig {
            allow_hosts: vec!["127.0.0.1".into(), "*.wikipedia.org".into()],
            ..HttpConfig::default()
        });
        assert!(c.check("http://127.0.0.1:8080/x").is_ok());
        assert!(c.check("https://en.wikipedia.org/w/api.php").is_ok());
        assert!(c.check("https://wikipedia.org/").is_ok());
        for bad in [
            "https://evilwikipedia.org/",
            "http://127.0.0.2/",
            "file:///etc/passwd",
            "not a url",
            "https://example.com/",
        ] {
            assert!(c.check(bad).is_err(), "{bad}");
        }
    }
}
