# MQK_SANITIZE=ON builds everything (the plugin, its unit tests, the tools) with
# AddressSanitizer and UndefinedBehaviorSanitizer; the first report aborts the program
# (-fno-sanitize-recover=all), so a test cannot pass over one. Off by default: the normal
# build does not change.
#
#   cmake -S . -B build-asan -DMQK_SANITIZE=ON && cmake --build build-asan -j2
#
# The plugin is a module that /usr/sbin/mosquitto (built without ASan) dlopens: the ASan
# runtime the plugin is linked with (gcc's libasan.so) is then preloaded into mosquitto,
# which the integration harness does with MQK_ASAN=1 (tests/sanitize/README.md). The
# ctest test "sanitize" does all of it.
option(MQK_SANITIZE "Build with -fsanitize=address,undefined (tests/sanitize)" OFF)

if(MQK_SANITIZE)
    # gcc links the shared ASan runtime into the plugin module (DT_NEEDED libasan.so.8),
    # which is what the harness looks for; clang would leave it out of a module.
    if(NOT CMAKE_C_COMPILER_ID STREQUAL "GNU")
        message(FATAL_ERROR "MQK_SANITIZE needs gcc (CC=gcc), not ${CMAKE_C_COMPILER_ID}")
    endif()
    add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=all)
    add_link_options(-fsanitize=address,undefined)

    # Preloaded into mosquitto before the ASan runtime (tests/sanitize/nodlclose.c says
    # why), so it is built without the sanitizers: it must not need libasan itself.
    add_library(mqk_nodlclose MODULE ${PROJECT_SOURCE_DIR}/tests/sanitize/nodlclose.c)
    set_target_properties(mqk_nodlclose PROPERTIES PREFIX "" OUTPUT_NAME nodlclose
                          LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/sanitize
                          COMPILE_OPTIONS "-Wall;-Wextra;-Werror" LINK_OPTIONS "")
endif()
