//! Support for cloud3 end-to-end tests.
