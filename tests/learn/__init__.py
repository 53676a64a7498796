"""core/learn: worst-frame sampling, the feedback store, the preference model, the auto-tuner."""
