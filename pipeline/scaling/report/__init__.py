"""Report: fit.json (`fit_json`, its one writer), report.md's sections and the figures, each rendering a result
object of `analyses`; nothing here reads a run file. `figure_style` is the one style every figure uses (small
multiples, readable log ticks, PNG + PDF); `write.write_report` puts the sections in order.

May import: `records`, `fits`, `analyses`, matplotlib (inside the figure modules' functions, so `pipeline scaling
fit` never loads it). Never `tools` or the CLI.
"""
