"""
The tests' fixtures live in modules of their own, loaded here; shared helpers
are in tests.support and the factory in tests.factories.
"""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.people",
    "tests.fixtures.processes",
    "tests.fixtures.redis_server",
    "tests.fixtures.smtp",
]
