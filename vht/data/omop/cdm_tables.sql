-- OMOP CDM v5.4: the four tables vht.data.read_omop reads (person, measurement, drug_exposure,
-- concept), valid in DuckDB and PostgreSQL alike.
--
-- Source: OHDSI Common Data Model v5.4 DDL, OHDSI/CommonDataModel,
-- inst/ddl/5.4/postgresql/OMOPCDM_postgresql_5.4_ddl.sql and
-- inst/ddl/5.4/duckdb/OMOPCDM_duckdb_5.4_ddl.sql (identical for these tables), Apache
-- License 2.0. The column names, order, types and NULL constraints are the CDM's, with one
-- change: the CDM's bare NUMERIC is written NUMERIC(38, 10), because DuckDB reads a bare
-- NUMERIC as DECIMAL(18, 3) and would round values to three decimals (PostgreSQL's bare
-- NUMERIC is exact at any scale). The @cdmDatabaseSchema. prefix is dropped: create the
-- tables in the schema or database that is current.
CREATE TABLE person (
    person_id integer NOT NULL,
    gender_concept_id integer NOT NULL,
    year_of_birth integer NOT NULL,
    month_of_birth integer NULL,
    day_of_birth integer NULL,
    birth_datetime TIMESTAMP NULL,
    race_concept_id integer NOT NULL,
    ethnicity_concept_id integer NOT NULL,
    location_id integer NULL,
    provider_id integer NULL,
    care_site_id integer NULL,
    person_source_value varchar(50) NULL,
    gender_source_value varchar(50) NULL,
    gender_source_concept_id integer NULL,
    race_source_value varchar(50) NULL,
    race_source_concept_id integer NULL,
    ethnicity_source_value varchar(50) NULL,
    ethnicity_source_concept_id integer NULL );

CREATE TABLE drug_exposure (
    drug_exposure_id integer NOT NULL,
    person_id integer NOT NULL,
    drug_concept_id integer NOT NULL,
    drug_exposure_start_date date NOT NULL,
    drug_exposure_start_datetime TIMESTAMP NULL,
    drug_exposure_end_date date NOT NULL,
    drug_exposure_end_datetime TIMESTAMP NULL,
    verbatim_end_date date NULL,
    drug_type_concept_id integer NOT NULL,
    stop_reason varchar(20) NULL,
    refills integer NULL,
    quantity NUMERIC(38, 10) NULL,
    days_supply integer NULL,
    sig TEXT NULL,
    route_concept_id integer NULL,
    lot_number varchar(50) NULL,
    provider_id integer NULL,
    visit_occurrence_id integer NULL,
    visit_detail_id integer NULL,
    drug_source_value varchar(50) NULL,
    drug_source_concept_id integer NULL,
    route_source_value varchar(50) NULL,
    dose_unit_source_value varchar(50) NULL );

CREATE TABLE measurement (
    measurement_id integer NOT NULL,
    person_id integer NOT NULL,
    measurement_concept_id integer NOT NULL,
    measurement_date date NOT NULL,
    measurement_datetime TIMESTAMP NULL,
    measurement_time varchar(10) NULL,
    measurement_type_concept_id integer NOT NULL,
    operator_concept_id integer NULL,
    value_as_number NUMERIC(38, 10) NULL,
    value_as_concept_id integer NULL,
    unit_concept_id integer NULL,
    range_low NUMERIC(38, 10) NULL,
    range_high NUMERIC(38, 10) NULL,
    provider_id integer NULL,
    visit_occurrence_id integer NULL,
    visit_detail_id integer NULL,
    measurement_source_value varchar(50) NULL,
    measurement_source_concept_id integer NULL,
    unit_source_value varchar(50) NULL,
    unit_source_concept_id integer NULL,
    value_source_value varchar(50) NULL,
    measurement_event_id integer NULL,
    meas_event_field_concept_id integer NULL );

CREATE TABLE concept (
    concept_id integer NOT NULL,
    concept_name varchar(255) NOT NULL,
    domain_id varchar(20) NOT NULL,
    vocabulary_id varchar(20) NOT NULL,
    concept_class_id varchar(20) NOT NULL,
    standard_concept varchar(1) NULL,
    concept_code varchar(50) NOT NULL,
    valid_start_date date NOT NULL,
    valid_end_date date NOT NULL,
    invalid_reason varchar(1) NULL );
