//! On-device speech (issue #3): microphone capture, resampling, voice activity
//! detection and speech recognition. Nothing is implemented yet; the crate exists so
//! that the crate graph (`firmware-config -> models -> speech -> runtime`) is in place.
