"""Same names and signatures as OneTrainer's; like it, exceptions raised by a callback are dropped."""


def _none(*args):
    return None


class TrainCallbacks:
    def __init__(self, on_update_train_progress=_none, on_update_status=_none, on_sample_default=_none,
                 on_update_sample_default_progress=_none, on_sample_custom=_none,
                 on_update_sample_custom_progress=_none):
        self._handlers = {
            "train_progress": on_update_train_progress, "status": on_update_status,
            "sample_default": on_sample_default, "sample_default_progress": on_update_sample_default_progress,
            "sample_custom": on_sample_custom, "sample_custom_progress": on_update_sample_custom_progress}

    def _call(self, name, *args):
        try:
            self._handlers[name](*args)
        except Exception:
            pass

    def on_update_train_progress(self, train_progress, max_step: int, max_epoch: int):
        self._call("train_progress", train_progress, max_step, max_epoch)

    def on_update_status(self, status: str):
        self._call("status", status)

    def on_sample_default(self, sampler_output):
        self._call("sample_default", sampler_output)

    def on_update_sample_default_progress(self, step: int, max_step: int):
        self._call("sample_default_progress", step, max_step)

    def on_sample_custom(self, sampler_output):
        self._call("sample_custom", sampler_output)

    def on_update_sample_custom_progress(self, progress: int, max_progress: int):
        self._call("sample_custom_progress", progress, max_progress)
