"""Local emulators that speak the real wire protocols, for `incident-bot demo` and the tests."""
