# cmake -DBUILD_DIR=... -DEXAMPLE_DIR=... -DWORK_DIR=... -DGENERATOR=... -P build_example.cmake
# Installs BUILD_DIR into WORK_DIR/prefix, builds the example plugin against the installed
# package, and checks that the installed CLI lists both the example and its own plugins.
cmake_minimum_required(VERSION 3.25)

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (${result}):\n${output}\n${errors}")
  endif()
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run_step("installing mambakit" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
if(NOT EXISTS ${prefix}/share/mambakit/models/default/model.safetensors)
  message(FATAL_ERROR "the install left out the bundled model (share/mambakit/models/default)")
endif()
run_step("configuring the example against the installed SDK"
  ${CMAKE_COMMAND} -S ${EXAMPLE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
  -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run_step("building the example" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run_step("listing plugins with the installed CLI"
  ${prefix}/bin/mambakit plugins --format json --plugin-dir ${WORK_DIR}/build/plugins)

string(JSON count LENGTH "${step_output}")
set(keys)
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON key GET "${step_output}" ${i} key)
  string(JSON file GET "${step_output}" ${i} file)
  list(APPEND keys "${key}")
  if("${key}" STREQUAL "selective_scan/sequential" AND NOT file MATCHES "^${prefix}/")
    message(FATAL_ERROR "the installed CLI loaded selective_scan/sequential from ${file}, not from its own prefix ${prefix}")
  endif()
endforeach()
foreach(expected mixer/ema selective_scan/sequential)
  if(NOT expected IN_LIST keys)
    message(FATAL_ERROR "the installed CLI does not list ${expected}; it lists: ${keys}")
  endif()
endforeach()
message(STATUS "installed CLI lists: ${keys}")
run_step("checking the example's conformance with the installed CLI"
  ${prefix}/bin/mambakit check-plugin mixer/ema --plugin-dir ${WORK_DIR}/build/plugins)
message(STATUS "${step_output}")

# docs/USING.md: an application built against the installed package, run on the installed
# bundled model; its greedy text must equal the installed CLI's.
# An executable linking a sanitized libmambakit must load the sanitizer runtime first.
set(app_flags)
if(SANITIZE)
  set(app_flags -DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined)
endif()
run_step("configuring the application against the installed package"
  ${CMAKE_COMMAND} -S ${APP_DIR} -B ${WORK_DIR}/app -G ${GENERATOR}
  -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release ${app_flags})
run_step("building the application" ${CMAKE_COMMAND} --build ${WORK_DIR}/app)
run_step("running the application" ${WORK_DIR}/app/greedy ${prefix}/share/mambakit/models/default "In the beginning" 12)
set(app_text "${step_output}")
run_step("the installed CLI's greedy text"
  ${prefix}/bin/mambakit generate --model ${prefix}/share/mambakit/models/default --prompt "In the beginning"
  --max-new-tokens 12 --temperature 0 --no-eos)
if(NOT "${app_text}" STREQUAL "${step_output}")
  message(FATAL_ERROR "the application printed '${app_text}', the CLI '${step_output}'")
endif()
message(STATUS "application: ${app_text}")

