# MQK_COVERAGE=ON adds gcc's --coverage (gcov counters) to everything built, for the line
# coverage the ctest test "sanitize" reports and enforces (tests/sanitize/run.sh turns it on
# in its ASan build; gcc supports both together). Off by default: the normal build does
# not change.
#
#   cmake -S . -B build-cov -DMQK_SANITIZE=ON -DMQK_COVERAGE=ON
option(MQK_COVERAGE "Build with gcc's --coverage (tests/sanitize/run.sh)" OFF)

if(MQK_COVERAGE)
    if(NOT CMAKE_C_COMPILER_ID STREQUAL "GNU")
        message(FATAL_ERROR "MQK_COVERAGE needs gcc (CC=gcc), not ${CMAKE_C_COMPILER_ID}")
    endif()
    add_compile_options(--coverage)
    add_link_options(--coverage)
endif()
