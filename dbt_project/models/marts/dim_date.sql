-- One row per calendar day from var dim_date_start to var dim_date_end (inclusive). Weeks are ISO weeks
-- (Monday first); every day in the lake is a UTC day.
with

days as (

    select cast(day as date) as date_day
    from range(
        cast('{{ var("dim_date_start") }}' as date),
        cast('{{ var("dim_date_end") }}' as date) + interval 1 day,
        interval 1 day
    ) as spine(day)

),

final as (

    select
        date_day,
        year(date_day) as year,
        quarter(date_day) as quarter,
        month(date_day) as month,
        monthname(date_day) as month_name,
        day(date_day) as day_of_month,
        isodow(date_day) as day_of_week,
        dayname(date_day) as day_name,
        weekofyear(date_day) as iso_week,
        isodow(date_day) >= 6 as is_weekend,
        cast(date_trunc('month', date_day) as date) as month_start
    from days

)

select * from final
