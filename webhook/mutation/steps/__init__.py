"""The plan's steps, one concern each: `step(context, state) -> state`, in the order `plan.STEPS` lists.

A step returns the state it was given when it has nothing to do, raises `Denied` (or `InvalidAnnotation`) for
what the pod cannot get, and otherwise a new state with the engine's new pod and a `Step` record.
"""
