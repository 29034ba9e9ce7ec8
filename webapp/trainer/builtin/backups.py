"""Backups of a run and the exact resume from one (the built-in backend's part for them).

A backup holds what the next step depends on for the whole group: the trained weights (the same
on every rank), the optimizer, LR schedule, loss scaler and EMA state, the RNG states of every
rank, gradients still waiting for the optimizer, and where the data order stands (epoch and step
in it: the order itself is a pure function of the seed). Rank 0 writes it; resuming with the same
number of ranks continues exactly.
"""
from __future__ import annotations

from webapp.trainer.builtin import checkpoint, resume


class Backups:
    """Mixed into BuiltinBackend: uses its groups, optimizer, stepper, group and progress."""

    def _restore(self) -> None:
        backup = resume.newest_backup(self.run_dir)
        if backup is None:
            self.callbacks.log("continue_last_backup is set but this run has no backup yet: "
                               "starting from the beginning", "warning")
            return
        resume.check_matches(backup, self.config)
        checkpoint.load_trained(self.groups, backup / checkpoint.TRAINED_FILE)
        resume.load_training_state(backup, self.optimizer, self.lr_scheduler, self.stepper.scaler,
                                   self.noise_rng, self.ema, rank=self.group.rank)
        self._restore_accumulation(resume.read_training_state(backup).get("accumulated"))
        progress = resume.read_progress(backup)
        self.epoch, self.epoch_step = int(progress["epoch"]), int(progress["epoch_step"])
        self.global_step = int(progress["global_step"])
        self.samples_seen = int(progress.get("samples_seen", 0))
        ranks = int(progress.get("world_size", 1))
        if ranks != self.group.world_size:
            self.callbacks.log(f"the backup was made on {ranks} rank(s), this run has "
                               f"{self.group.world_size}: the batches of the rest of the run differ "
                               "from an uninterrupted one", "warning")
        self.callbacks.log(f"resuming from backup {backup.name} at step {self.global_step} "
                           f"(epoch {self.epoch + 1}, step {self.epoch_step} of it)")
        self.callbacks.status(f"resuming at step {self.global_step}")

    def _restore_accumulation(self, accumulated: dict | None) -> None:
        """Gradients of batches that waited for the optimizer when the backup was made."""
        if not accumulated or not accumulated.get("pending"):
            return
        for param, grad in zip(self.stepper.params, accumulated["grads"]):
            param.grad = None if grad is None else grad.to(param.device, param.dtype)
        self.stepper.pending = int(accumulated["pending"])

    def _backup(self) -> None:
        self.callbacks.status("creating backup")
        progress = {"epoch": self.epoch, "epoch_step": self.epoch_step,
                    "global_step": self.global_step, "samples_seen": self.samples_seen,
                    "max_step": self.max_step, "max_epoch": self.settings.epochs}
        if self.group.world_size > 1:
            progress["world_size"] = self.group.world_size
        state = resume.training_state(self.optimizer, self.lr_scheduler, self.stepper.scaler,
                                      self.noise_rng, self.ema)
        state["rng_ranks"] = self.group.gather(state["rng"])
        if self.stepper.pending:
            # averaging now is the same sum as averaging at the optimizer step (it is linear), and
            # leaves one set of gradients for the whole group to resume from
            self.stepper.reduce_pending()
        if not self.group.is_main:
            return
        if self.stepper.pending:  # gradients waiting for the optimizer: a resume needs them
            state["accumulated"] = {"pending": self.stepper.pending,
                                    "grads": [None if p.grad is None else p.grad.detach().cpu()
                                              for p in self.stepper.params]}
        folder = checkpoint.write_backup(self.run_dir, self.groups, state, progress, self.config)
        self.callbacks.log(f"backup written: {folder.relative_to(self.run_dir).as_posix()}",
                           artifact=self._artifact("backup", folder))
        if self.settings.rolling_backup:
            for old in checkpoint.prune_backups(self.run_dir, self.settings.rolling_backup_count):
                self.callbacks.log(f"rolling backup: removed {old.name}")
        self._resume_status()

