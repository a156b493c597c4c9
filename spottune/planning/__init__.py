"""From presets to runs: the grid (:mod:`.grid`: presets -> RunSpecs), the checks before launch
(:mod:`.preflight`), a protocol's hyperparameter search (:mod:`.search`), each method's recipe for
``--dry-run`` (:mod:`.recipes`) and budgets stated in iterations (:mod:`.iteration_budget`).
"""
