"""The runs' figures, one module per experiment, drawn with matplotlib's Agg canvas.

Each module has ``draw_*`` (returns the matplotlib Figure) and ``plot_*`` (draws and
saves it as PNG + PDF through ``common.save``, returns both paths). ``common`` holds what
they share: constrained layout (nothing clipped), legends outside the axes (no data
covered), wrapped titles, integer layer ticks. Every figure states N and k.
"""
