"""The build's steps, each a function over typed values, composed by ``Builder.build``:

    prepare.plan            dataset version rows          -> BuildPlan (labels, splits, config)
    prepare.warm_start      a registered model            -> WarmStart (weights, architecture)
    train.start_run         BuildPlan (+ search)          -> TrainingRun (tracked, maybe resumed)
    train.train             TrainingRun                   -> TrainedModel
    evaluate.evaluate_model TrainedModel                  -> Evaluated (evaluation, gates)
    package.package_model   TrainedModel, Evaluated       -> Package (ONNX, parity, int8, report)
    register.register_model Package                       -> Registration (version, champion)
    register.complete_run   all of them                   -> the run's final metrics

Collaborators (tracker, registry, content store, progress) come in as arguments; a step that
finds the model unfit raises the KennelError for it (TrainingError, PackagingError).
"""
