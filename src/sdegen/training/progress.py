"""One progress bar over the whole training run, and a graceful stop on SIGINT/SIGTERM.

Lightning's bar restarts every epoch (an epoch of the default run is 70 steps), so a 20-minute run
shows no overall progress.  ``RunProgressBar`` counts optimizer steps up to ``trainer.max_steps``
(resumed runs start at their step) and shows the time left: the smaller of the step-rate estimate
and what remains of ``trainer.max_time``.
"""

from __future__ import annotations

import signal
import time

from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60:02d}:{seconds % 60:02d}"
    )


class RunProgressBar(TQDMProgressBar):
    """A single bar: step k of max_steps, steps/s, elapsed and time left (validation runs silently)."""

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"

    def on_train_start(self, trainer, pl_module):
        import sys

        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self.train_progress_bar = Tqdm(
            desc="train",
            total=total,
            initial=trainer.global_step,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )
        self._start, self._start_step = time.monotonic(), trainer.global_step

    def on_train_epoch_start(self, trainer, *_):
        pass  # one bar for the whole run

    def _time_left(self, trainer) -> str | None:
        elapsed = time.monotonic() - self._start
        done = trainer.global_step - self._start_step
        estimates = []
        if trainer.max_steps and trainer.max_steps > 0 and done > 0:
            estimates.append(elapsed / done * (trainer.max_steps - trainer.global_step))
        timer = next((cb for cb in trainer.callbacks if type(cb).__name__ == "Timer"), None)
        if timer is not None and timer.time_remaining() is not None:
            estimates.append(timer.time_remaining())
        return _fmt(min(estimates)) if estimates else None

    #: seconds between bar refreshes: each refresh reads the loss on the host (a GPU sync), so at most this often
    min_interval = 0.5

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        bar = self.train_progress_bar
        if bar is None or bar.disable or not self._should_update(trainer.global_step, bar.total or 0):
            return
        now = time.monotonic()
        last_step = bool(bar.total) and trainer.global_step >= bar.total
        if now - getattr(self, "_last_refresh", 0.0) < self.min_interval and not last_step:
            return
        self._last_refresh = now
        bar.n = trainer.global_step
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        for key in ("train/loss", "train/acc"):  # logged without prog_bar: not read on the host every step
            value = trainer.callback_metrics.get(key)
            if value is not None:
                metrics[key] = f"{float(value):.4g}"
        left = self._time_left(trainer)
        if left is not None:
            metrics["left"] = left
        bar.set_postfix(metrics, refresh=False)
        bar.refresh()

    def on_train_epoch_end(self, trainer, pl_module):
        pass

    def init_validation_tqdm(self):
        return Tqdm(disable=True)


class StopOnSignal(Callback):
    """The first SIGINT/SIGTERM asks the run to stop after the current step (the checkpoint callback
    then writes ``last.ckpt``); a second SIGINT aborts.  ``signal_received`` says which arrived.
    Installed at train start, after Lightning's own SIGTERM handler (which would end the run
    without a checkpoint), and restored at the end."""

    def __init__(self):
        self.signal_received = None
        self._previous = {}

    def _handler(self, trainer):
        def handle(signum, frame):
            if self.signal_received is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal_received = signal.Signals(signum).name
            trainer.should_stop = True

        return handle

    def on_train_start(self, trainer, pl_module):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.signal_received is not None:
            trainer.should_stop = True  # (re)assert: validation may have reset it

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_train_end(self, trainer, pl_module):
        self._restore()

    def on_exception(self, trainer, pl_module, exception):
        self._restore()
