# mambakit_add_plugin(NAME <name> KIND <mixer|head|scan|...> SOURCES <files...> [NO_INSTALL])
#
# Builds a mambakit plugin: a MODULE library named mambakit_<kind>_<name> that links
# mambakit::sdk, is compiled as C++20 with hidden visibility (only the plugin entry is
# exported), and installs to the plugin folder unless NO_INSTALL is given. In-tree builds and third parties use this
# same function.
#
# Variables it reads, when set:
#   MAMBAKIT_PLUGIN_OUTPUT_DIRECTORY  where the built module goes (default: <build>/plugins)
#   MAMBAKIT_PLUGIN_INSTALL_DIR       install destination (default: <libdir>/mambakit/plugins)
function(mambakit_add_plugin)
  cmake_parse_arguments(PLUGIN "NO_INSTALL" "NAME;KIND" "SOURCES" ${ARGN})
  if(NOT PLUGIN_NAME OR NOT PLUGIN_KIND OR NOT PLUGIN_SOURCES)
    message(FATAL_ERROR "mambakit_add_plugin needs NAME, KIND and SOURCES")
  endif()
  if(NOT PLUGIN_NAME MATCHES "^[a-z0-9_]+$" OR NOT PLUGIN_KIND MATCHES "^[a-z0-9_]+$")
    message(FATAL_ERROR "mambakit_add_plugin: NAME and KIND must be [a-z0-9_]+, got '${PLUGIN_KIND}' '${PLUGIN_NAME}'")
  endif()
  set(target mambakit_${PLUGIN_KIND}_${PLUGIN_NAME})
  add_library(${target} MODULE ${PLUGIN_SOURCES})
  target_link_libraries(${target} PRIVATE mambakit::sdk)
  if(TARGET mambakit::compile_options)
    target_link_libraries(${target} PRIVATE mambakit::compile_options)
  endif()
  target_compile_features(${target} PRIVATE cxx_std_20)

  if(DEFINED MAMBAKIT_PLUGIN_OUTPUT_DIRECTORY)
    set(output_directory ${MAMBAKIT_PLUGIN_OUTPUT_DIRECTORY})
  else()
    set(output_directory ${CMAKE_BINARY_DIR}/plugins)
  endif()
  if(DEFINED MAMBAKIT_PLUGIN_INSTALL_DIR)
    set(install_directory ${MAMBAKIT_PLUGIN_INSTALL_DIR})
  else()
    include(GNUInstallDirs)
    set(install_directory ${CMAKE_INSTALL_LIBDIR}/mambakit/plugins)
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME mambakit-${PLUGIN_KIND}-${PLUGIN_NAME}
    LIBRARY_OUTPUT_DIRECTORY ${output_directory}
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(NOT PLUGIN_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${install_directory})
  endif()
endfunction()
