# Installation and packaging. Included from the top-level CMakeLists.txt after
# the pinlab library and the pinlab-cli tool are defined.
#
# `cmake --install <build> [--prefix P]` installs (relative to P):
#   ${CMAKE_INSTALL_LIBDIR}/libpinlab.a      (libpinlab.so* with -DBUILD_SHARED_LIBS=ON)
#   ${CMAKE_INSTALL_INCLUDEDIR}/pinlab/*.h   the C API (kapi.h)
#   ${CMAKE_INSTALL_BINDIR}/pinlab           the command-line tool
#   ${CMAKE_INSTALL_LIBDIR}/cmake/pinlab/    pinlabConfig.cmake, pinlabConfigVersion.cmake,
#                                            pinlabTargets*.cmake: find_package(pinlab)
#                                            gives the imported target pinlab::pinlab
#   ${CMAKE_INSTALL_LIBDIR}/pkgconfig/pinlab.pc
# Everything is relocatable: the prefix may be chosen at install time.
#
# If the library ever links another package (fmt, liburing, ...), even
# PRIVATE-ly (a static library's private dependencies are its users' link
# dependencies), add a find_dependency() to cmake/pinlabConfig.cmake.in and
# the library to Libs in cmake/pinlab.pc.in.
include(CMakePackageConfigHelpers)

set(PINLAB_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/pinlab")
set(PINLAB_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig")

# ---- the library and its headers ------------------------------------------------
# pinlab_warnings is linked only as $<BUILD_INTERFACE:...>, so it stays out of
# the export set.
install(TARGETS pinlab
  EXPORT pinlabTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/pinlab
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")

# ---- the command-line tool ---------------------------------------------------------
install(TARGETS pinlab-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_BINARY_DIR}/tools/pinlab.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
if(BUILD_SHARED_LIBS AND NOT IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" AND NOT IS_ABSOLUTE "${CMAKE_INSTALL_BINDIR}")
  # Let the installed tool find libpinlab.so wherever the prefix ends up.
  file(RELATIVE_PATH _pinlab_bin_to_lib "/${CMAKE_INSTALL_BINDIR}" "/${CMAKE_INSTALL_LIBDIR}")
  set_target_properties(pinlab-cli PROPERTIES INSTALL_RPATH "$ORIGIN/${_pinlab_bin_to_lib}")
endif()

# ---- CMake package: find_package(pinlab) -------------------------------------------
install(EXPORT pinlabTargets
  NAMESPACE pinlab::
  DESTINATION ${PINLAB_INSTALL_CMAKEDIR})
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/pinlabConfig.cmake.in
  ${PROJECT_BINARY_DIR}/pinlabConfig.cmake
  INSTALL_DESTINATION ${PINLAB_INSTALL_CMAKEDIR})
# 0.x: a minor version may break the API, so only the same 0.MINOR is compatible.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/pinlabConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/pinlabConfig.cmake
  ${PROJECT_BINARY_DIR}/pinlabConfigVersion.cmake
  DESTINATION ${PINLAB_INSTALL_CMAKEDIR})

# ---- pkg-config: pinlab.pc -----------------------------------------------------------
# Paths are relative to the .pc file's own directory (${pcfiledir}), so the
# file stays right whatever prefix `cmake --install --prefix` is given.
if(IS_ABSOLUTE "${PINLAB_INSTALL_PKGCONFIGDIR}")
  set(PINLAB_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _pinlab_pc_up "/${PINLAB_INSTALL_PKGCONFIGDIR}" "/")
  string(REGEX REPLACE "/$" "" _pinlab_pc_up "${_pinlab_pc_up}")
  set(PINLAB_PC_PREFIX "\${pcfiledir}/${_pinlab_pc_up}")
endif()
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
    set(PINLAB_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
  else()
    set(PINLAB_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/pinlab.pc.in ${PROJECT_BINARY_DIR}/pinlab.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pinlab.pc DESTINATION ${PINLAB_INSTALL_PKGCONFIGDIR})
