//! Hostile peers: slow bodies, idle connections, oversized responses, stale or unbounded
//! freshness headers, cancelled requests.
