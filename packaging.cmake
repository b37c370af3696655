# Installation layout and the Debian package.
install(FILES etc/moltd.conf DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/molt)
install(FILES etc/moltd.logrotate DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d
        RENAME moltd)
install(FILES etc/moltd.service etc/moltd.socket etc/molt-run@.service
        DESTINATION lib/systemd/system)
# The unit's ExecStart=: the last good record if the master died, else moltd.
install(PROGRAMS etc/moltd-start DESTINATION lib/molt)
# molt-run runs one instance per /etc/molt/molt-run/NAME.conf: the annotated
# example is documentation, not a configuration of its own.
install(FILES etc/molt-run.conf DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME molt)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "molt developers <molt@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "HTTP object server and program supervisor that reload without dropping a request")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The postinst makes the workers' user with useradd.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
# The logrotate file is inert without logrotate.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_SOURCE_DIR}/etc/debian/conffiles
    ${CMAKE_CURRENT_SOURCE_DIR}/etc/debian/postinst)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
