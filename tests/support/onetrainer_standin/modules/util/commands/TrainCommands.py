"""Flags set by a UI and taken by the trainer once per batch (OneTrainer's names)."""


class TrainCommands:
    def __init__(self, on_command=None):
        self.on_command = on_command
        self.reset()

    def reset(self):
        self._stop, self._sample_default, self._backup, self._save = False, False, False, False
        self._sample_custom = []

    def _notify(self):
        if self.on_command:
            self.on_command(self)

    def stop(self):
        self._stop = True
        self._notify()

    def get_stop_command(self) -> bool:
        return self._stop

    def sample_custom(self, sample_params):
        self._sample_custom.append(sample_params)
        self._notify()

    def get_and_reset_sample_custom_commands(self) -> list:
        taken, self._sample_custom = self._sample_custom, []
        return taken

    def sample_default(self):
        self._sample_default = True
        self._notify()

    def get_and_reset_sample_default_command(self) -> bool:
        taken, self._sample_default = self._sample_default, False
        return taken

    def backup(self):
        self._backup = True
        self._notify()

    def get_and_reset_backup_command(self) -> bool:
        taken, self._backup = self._backup, False
        return taken

    def save(self):
        self._save = True
        self._notify()

    def get_and_reset_save_command(self) -> bool:
        taken, self._save = self._save, False
        return taken
