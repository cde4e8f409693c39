"""Controllers: level-triggered ``reconcile(key)`` loops over keyed queues, fed by shared
informers. Entry point ``python -m berth.controllers --kubeconfig FILE``."""
