"""What a person sees of a run: the timing record every display is drawn from
(:mod:`~provisioner.output.record`), the live progress display with its summary table
(:mod:`~provisioner.output.progress`) and the SVG timeline (:mod:`~provisioner.output.timeline`)."""
