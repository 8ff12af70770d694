"""From a parsed model to a program: build, differentiate, schedule, fuse, lifetimes."""
