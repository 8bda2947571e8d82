#!/usr/bin/env bash
# Regenerate (or --check) the expectations of tests/fixtures/refresh-config from upstream os-refresh-config.
#   scripts/regen-refresh-config-fixtures.sh [--check] [CASE...]
exec bash "$(dirname "$0")/regen-fixtures.sh" refresh-config "$@"
