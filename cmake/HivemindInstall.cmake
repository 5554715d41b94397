# install(EXPORT) so that find_package(hivemind) works from an install prefix.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(hivemind_installed_targets hivemind)
if(HIVEMIND_WITH_TORCH)
  list(APPEND hivemind_installed_targets hivemind_torch)
endif()
if(HIVEMIND_WITH_NCCL)
  list(APPEND hivemind_installed_targets hivemind_nccl)
endif()
install(TARGETS ${hivemind_installed_targets} EXPORT hivemindTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/hivemind
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT hivemindTargets NAMESPACE hivemind::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hivemind)

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/hivemindConfig.cmake.in
  ${PROJECT_BINARY_DIR}/hivemindConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hivemind)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/hivemindConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/hivemindConfig.cmake
              ${PROJECT_BINARY_DIR}/hivemindConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hivemind)
