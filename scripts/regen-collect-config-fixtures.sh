#!/usr/bin/env bash
# Regenerate (or --check) the expectations of tests/fixtures/collect-config from upstream os-collect-config.
#   scripts/regen-collect-config-fixtures.sh [--check] [CASE...]
exec bash "$(dirname "$0")/regen-fixtures.sh" collect-config "$@"
