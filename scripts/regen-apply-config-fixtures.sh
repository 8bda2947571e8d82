#!/usr/bin/env bash
# Regenerate (or --check) the expectations of tests/fixtures/apply-config from upstream os-apply-config.
#   scripts/regen-apply-config-fixtures.sh [--check] [CASE...]
exec bash "$(dirname "$0")/regen-fixtures.sh" apply-config "$@"
