"""Controller machinery: clock, informers and their shared cache, the keyed work queue, the
reconcile runner, leader election and event recording."""
