"""The chaos suite: a harness that drives hystrix-actors with many callers while faults are
injected, the tests that run it briefly, and the soak (``python -m tests.chaos.soak``)."""
