//! Hostile input, one regression per case: scripts, peers and files an attacker controls.
//! Every case is bounded in time and runs on loopback only; docs/security.md lists the
//! limits each one exercises.

mod files;
mod peers;
mod scripts;
