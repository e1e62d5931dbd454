"""Training: losses, schedules, trainers (retrieval, localizer, adaptation). Import submodules directly."""
