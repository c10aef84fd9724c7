"""Speed benchmarks of the tutorial's fast paths against a faithful reference-style pipeline (`python -m benchmarks.run`)."""
