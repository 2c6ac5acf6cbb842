//! Hostile files: GGUF models with overflowing dims, corrupt or special keyfiles, event logs
//! with non-finite values.
