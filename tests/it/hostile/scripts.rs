//! Hostile scripts: import cycles, deep stacks, memory and log floods, slow service calls.
