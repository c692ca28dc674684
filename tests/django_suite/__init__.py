"""Django's own session test suite, downloaded at test time and run against our engines."""
