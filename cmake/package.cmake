# package.cmake - the Debian package, built by CPack:
#
#   cmake -S . -B build && cmake --build build && (cd build && cpack -G DEB)
#   -> build/mosquitto-kafka_<version>+deb<N>_amd64.deb   (0.1.0+deb12 on Debian 12)
#
# A package is built for the Debian release it is built on: its Depends name that
# release's library versions. Its version says which: the project's version, then
# +deb<VERSION_ID> from /etc/os-release at configure time (0.1.0+deb12, 0.1.0+deb13;
# +<ID><VERSION_ID> elsewhere, nothing without an os-release). -DMQK_DEB_VERSION=... sets it.
#
# Contents (what install() rules put under the /usr prefix, plus /etc):
#   /usr/lib/x86_64-linux-gnu/mosquitto_kafka.so     the plugin
#   /etc/mosquitto/conf.d/mosquitto-kafka.conf       all comments: enables nothing (conffile)
#   /usr/bin/mqk-devkafka                            a mock Kafka cluster for trying it out
#   /usr/bin/mqk-loadgen, /usr/bin/mqk-controller    the study's load simulator and controller
#   /usr/bin/mqk-router                              targeted mode's command router
#   /usr/bin/mqk-hybrid                              the study's A3 HybridClient (MQTT -> Kafka)
#   /usr/include/mosquitto_kafka.h                   header and envelope names for consumers
#   /usr/include/mqk_payload.h                       mqk-loadgen's payload layout
#   /usr/share/man/man1/mqk-*.1.gz                   the five tools' manual pages
#   /usr/share/man/man5/mosquitto-kafka.5.gz         the plugin's options (scripts/gen-man5.py)
#   /usr/share/doc/mosquitto-kafka/{README.md,copyright,changelog.gz}
#   /usr/share/lintian/overrides/mosquitto-kafka     each with its reason (cmake/deb/)
#
# Maintainer scripts (cmake/deb/): postinst makes /var/lib/mosquitto/mosquitto-kafka, the
# parent of the plugin's default journal_dir, owned by mosquitto, 0750; postrm removes it
# on purge.
#
# Depends are computed by dpkg-shlibdeps (librdkafka1, libcjson1, libmicrohttpd12, libmosquitto1, libc6)
# plus mosquitto.
# The plugin's mosquitto_* symbols are resolved from the broker at load time, so
# dpkg-shlibdeps cannot see that dependency: it is declared by hand.

set(mqk_os_id "")
set(mqk_os_version "")
set(mqk_os_codename "unstable")
if(EXISTS /etc/os-release)
    file(STRINGS /etc/os-release mqk_os_lines REGEX "^(ID|VERSION_ID|VERSION_CODENAME)=")
    foreach(line IN LISTS mqk_os_lines)
        if(line MATCHES "^ID=\"?([a-z0-9._-]+)\"?$")
            set(mqk_os_id "${CMAKE_MATCH_1}")
        elseif(line MATCHES "^VERSION_ID=\"?([0-9.]+)\"?$")
            set(mqk_os_version "${CMAKE_MATCH_1}")
        elseif(line MATCHES "^VERSION_CODENAME=\"?([a-z]+)\"?$")
            set(mqk_os_codename "${CMAKE_MATCH_1}")
        endif()
    endforeach()
endif()
if(NOT DEFINED MQK_DEB_VERSION)
    set(MQK_DEB_VERSION "${PROJECT_VERSION}")
    if(mqk_os_id STREQUAL "debian" AND mqk_os_version)
        set(MQK_DEB_VERSION "${PROJECT_VERSION}+deb${mqk_os_version}")
    elseif(mqk_os_id AND mqk_os_version)
        set(MQK_DEB_VERSION "${PROJECT_VERSION}+${mqk_os_id}${mqk_os_version}")
    endif()
endif()
message(STATUS "Debian package: mosquitto-kafka_${MQK_DEB_VERSION}_amd64.deb")

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "mosquitto-kafka")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "mosquitto-kafka")
set(CPACK_PACKAGE_CONTACT "mosquitto-kafka maintainers <maintainers@mosquitto-kafka.example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Mosquitto plugin that forwards MQTT messages to Kafka")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DIRECTORY "${PROJECT_BINARY_DIR}")

set(CPACK_DEBIAN_PACKAGE_NAME "mosquitto-kafka")
set(CPACK_DEBIAN_PACKAGE_VERSION "${MQK_DEB_VERSION}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "amd64")
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
# The extended description; CPack puts the summary first and indents these lines.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"mosquitto-kafka is a plugin for the Mosquitto 2.0 MQTT broker. Every PUBLISH
whose topic matches a configured route is produced to a Kafka topic with
librdkafka, with its MQTT metadata (topic, client id, QoS, MQTT v5 properties,
a per-route sequence number) as Kafka record headers, raw or as a JSON
envelope. The other way, it consumes command records from Kafka and publishes
each to the one MQTT client it names, on whichever broker of a cluster that
client is connected to.

The package installs the plugin, a commented-out configuration file in
/etc/mosquitto/conf.d, mqk-devkafka, a mock Kafka cluster for trying it
out, mqk-loadgen, which simulates thousands of MQTT devices,
mqk-controller, a Kafka consumer that measures loss and latency and sends
commands to devices, and mqk-router, which routes commands to the broker
holding each device.")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "mosquitto (>= 2.0)")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
# Directories the package shares with others are not its own: do not list /etc,
# /usr/lib/x86_64-linux-gnu, ... as created by it (lintian: permissions, file ownership).
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

# conffiles: dpkg keeps an admin's edits of these across upgrades. The maintainer scripts
# are ours: CPack then adds no ldconfig calls of its own (the plugin is no library anyone
# links against).
set(MQK_CONFFILES_FILE "${PROJECT_BINARY_DIR}/debian/conffiles")
file(WRITE "${MQK_CONFFILES_FILE}" "/etc/mosquitto/conf.d/mosquitto-kafka.conf\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${MQK_CONFFILES_FILE}"
    "${PROJECT_SOURCE_DIR}/cmake/deb/postinst" "${PROJECT_SOURCE_DIR}/cmake/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# /usr/share/doc/<package>/copyright in Debian's machine-readable format (lintian).
set(MQK_COPYRIGHT_FILE "${PROJECT_BINARY_DIR}/debian/copyright")
file(WRITE "${MQK_COPYRIGHT_FILE}"
"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mosquitto-kafka
Source: the mosquitto-kafka source repository

Files: *
Copyright: 2026 The mosquitto-kafka contributors
License: EPL-2.0 or EDL-1.0
 Licensed like Mosquitto, under the Eclipse Public License 2.0 or the Eclipse
 Distribution License 1.0 (BSD-3-Clause).
")
install(FILES "${MQK_COPYRIGHT_FILE}" DESTINATION ${CMAKE_INSTALL_DOCDIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# /usr/share/doc/<package>/changelog.gz (a native package: its version has no Debian
# revision), gzip -9n so that the package is reproducible. The man page likewise.
find_program(MQK_GZIP gzip)
if(MQK_GZIP)
    string(TIMESTAMP MQK_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
    file(WRITE "${PROJECT_BINARY_DIR}/debian/changelog"
"mosquitto-kafka (${MQK_DEB_VERSION}) ${mqk_os_codename}; urgency=medium

  * Built from source with CPack.

 -- ${CPACK_PACKAGE_CONTACT}  ${MQK_CHANGELOG_DATE}
")
    execute_process(COMMAND ${MQK_GZIP} -9nf "${PROJECT_BINARY_DIR}/debian/changelog")
    install(FILES "${PROJECT_BINARY_DIR}/debian/changelog.gz"
            DESTINATION ${CMAKE_INSTALL_DOCDIR}
            PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    foreach(page mqk-devkafka mqk-loadgen mqk-controller mqk-router mqk-hybrid)
        configure_file("${PROJECT_SOURCE_DIR}/docs/man/${page}.1"
                       "${PROJECT_BINARY_DIR}/debian/${page}.1" COPYONLY)
        execute_process(COMMAND ${MQK_GZIP} -9nf "${PROJECT_BINARY_DIR}/debian/${page}.1")
        install(FILES "${PROJECT_BINARY_DIR}/debian/${page}.1.gz"
                DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
                PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    endforeach()
    # The plugin's options, generated from options.c's table (ctest man_page keeps it so).
    configure_file("${PROJECT_SOURCE_DIR}/docs/man/mosquitto-kafka.5"
                   "${PROJECT_BINARY_DIR}/debian/mosquitto-kafka.5" COPYONLY)
    execute_process(COMMAND ${MQK_GZIP} -9nf "${PROJECT_BINARY_DIR}/debian/mosquitto-kafka.5")
    install(FILES "${PROJECT_BINARY_DIR}/debian/mosquitto-kafka.5.gz"
            DESTINATION ${CMAKE_INSTALL_MANDIR}/man5
            PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

# lintian's overrides, each with its reason in a comment above it.
install(FILES "${PROJECT_SOURCE_DIR}/cmake/deb/lintian-overrides"
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides RENAME mosquitto-kafka
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

include(CPack)
