"""optforge's command line (`search.cli`, one module per subcommand in `search.commands`).

The search itself: `search.engine.run_search` (the library entry point), the funnel
(`search.funnel`), the steady-state driver (`search.driver`), the ask/tell strategies
(`search.strategies`), mutation, and the executors (`search.executors`); the README's "Search"
section describes the data flow.
"""
