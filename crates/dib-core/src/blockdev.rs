//! Block-device configuration (diskimage-builder YAML) to a node graph and a disk plan.
