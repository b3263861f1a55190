//! The HTTP boundary, the store and the background jobs of autoheal.
