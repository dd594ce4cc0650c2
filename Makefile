# Shortcuts for the scripts in scripts/ (which work without make, too).
.PHONY: demo

# A whole coffee run against the real service with simulated people; see README.md.
demo:
	scripts/demo $(ARGS)
